"""C-STORE from real peers over mutual TLS: dcmtk's ``storescu`` and concurrent nodes.

Every check reads the archive back, decrypting what was stored.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.conftest import SAMPLE_NAMES, RunningDicom, assert_same_dataset, read_stored
from tests.data.make_series import make_ct_series
from tests.dicom.helpers import DCMTK_ENV, STORESCU_PROPOSE, _assert_same_values, _study_uid


@pytest.fixture(scope="module")
def ct50(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """50 small CT slices of one series."""
    return make_ct_series(tmp_path_factory.mktemp("ct50"), slices=50, rows=64, columns=64, seed=50)


@pytest.fixture(scope="module")
def four_series(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Four studies of 25 small slices, one per sending modality."""
    return [
        make_ct_series(
            tmp_path_factory.mktemp(f"node{n}"),
            slices=25,
            rows=48,
            columns=48,
            patient_id=f"PID-N{n}",
            patient_name=f"NODE^PATIENT{n}",
            seed=n,
        )
        for n in range(4)
    ]


# -- C-STORE with dcmtk ---------------------------------------------------------------------------


def test_storescu_50_ct_slices_over_mutual_tls_arrive_identical(
    dicom: RunningDicom, ct50: list[Path]
) -> None:
    node = dicom.enrol("CT_SCANNER")

    result = dicom.dcmtk("storescu", node, files=ct50)

    assert result.returncode == 0, result.stderr
    for path in ct50:
        sent = pydicom.dcmread(path)
        received = read_stored(dicom.pacs, sent.SOPInstanceUID)
        assert received.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert_same_dataset(received, sent)
    report = dicom.pacs.archive.verify()
    assert report.ok, (report.damaged, report.inconsistent)
    assert report.checked == 50
    assert report.orphans == [] and report.temp_files == []


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_storescu_compressed_sample_is_kept_in_its_own_transfer_syntax(
    dicom: RunningDicom, sample_files: list[Path], name: str
) -> None:
    path = next(p for p in sample_files if p.name == name)
    sent = pydicom.dcmread(path)
    syntax = str(sent.file_meta.TransferSyntaxUID)
    node = dicom.enrol("MODALITY")

    result = dicom.dcmtk("storescu", node, "-R", STORESCU_PROPOSE[syntax], files=[path])

    assert result.returncode == 0, result.stderr
    assert dicom.pacs.archive.instance(sent.SOPInstanceUID).transfer_syntax == syntax
    received = read_stored(dicom.pacs, sent.SOPInstanceUID)
    assert received.file_meta.TransferSyntaxUID == syntax
    _assert_same_values(received, sent)  # encapsulated fragments byte for byte: not transcoded


def test_four_nodes_store_concurrently_and_every_object_arrives_intact(
    dicom: RunningDicom, four_series: list[list[Path]]
) -> None:
    nodes = [dicom.enrol(f"MODALITY{n}") for n in range(4)]
    processes = [
        subprocess.Popen(
            [
                "/usr/bin/storescu",
                *node.tls_args(),
                "-aet",
                node.ae_title,
                "-aec",
                dicom.ae_title,
                "-R",
                "127.0.0.1",
                str(dicom.port),
                *map(str, files),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=DCMTK_ENV,
        )
        for node, files in zip(nodes, four_series, strict=True)
    ]
    outcomes = [process.communicate(timeout=120) for process in processes]

    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err for _, err in outcomes]
    report = dicom.pacs.archive.verify()
    assert report.ok, (report.damaged, report.inconsistent)
    assert report.checked == 100
    for files in four_series:
        study = dicom.pacs.archive.study_instances(_study_uid(files[0]))
        assert len(study) == 25
        for path in files:
            sent = pydicom.dcmread(path)
            assert_same_dataset(read_stored(dicom.pacs, sent.SOPInstanceUID), sent)
