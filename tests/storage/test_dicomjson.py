"""The DICOM JSON writer of the metadata answers: the same JSON as pydicom's, without DataElements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from storage.dicomjson import BINARY_VRS, BULK_THRESHOLD, instance_dict
from tests.data.make_series import make_ct_series

BASE = "https://host/dicomweb/studies/1/series/2/instances/3/bulkdata/"


def _read(path: str) -> Dataset | None:
    """The data set of `path` (forced for a ``.dcm`` without file meta), or None when it is not DICOM."""
    try:
        return pydicom.dcmread(path, force=path.endswith(".dcm"))
    except (InvalidDicomError, IsADirectoryError):
        return None


def _readable() -> list[str]:
    return [path for path in sorted(get_testdata_files()) if _read(path) is not None]


# Left out: folders, and files that are not DICOM (README, JSON, an ICC profile, dumps, a gzip).
NOT_DICOM = {"README", ".txt", ".json", ".icc", ".dump", ".gz"}


def pydicom_json(ds: Dataset) -> dict[str, Any]:
    """pydicom's JSON of `ds`, bulk values named as metadata.py named them before the writer."""
    paths: dict[int, str] = {}

    def walk(found: Dataset, prefix: str) -> None:
        for elem in found:
            if elem.VR == "SQ":
                for number, item in enumerate(elem.value, start=1):
                    walk(item, f"{prefix}{elem.tag:08X}/{number}/")
            elif elem.VR in BINARY_VRS and elem.value is not None and len(elem.value) > BULK_THRESHOLD:
                paths[id(elem)] = f"{prefix}{elem.tag:08X}"

    walk(ds, "")

    def uri(elem: DataElement) -> str:
        return BASE + paths.get(id(elem), f"{elem.tag:08X}")

    return ds.to_json_dict(BULK_THRESHOLD, uri, suppress_invalid_tags=True)


def _text(item: dict[str, Any]) -> str:
    return json.dumps(item, separators=(",", ":"))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("path", _readable(), ids=lambda path: Path(path).name)
def test_json_of_every_pydicom_test_file_is_pydicoms(path: str) -> None:
    ours, theirs = _read(path), _read(path)
    assert ours is not None and theirs is not None
    assert _text(instance_dict(ours, BASE)) == _text(pydicom_json(theirs))


def test_only_folders_and_files_that_are_not_dicom_are_left_out() -> None:
    compared = set(_readable())
    left_out = [Path(path) for path in get_testdata_files() if path not in compared]
    assert [path for path in left_out if not path.is_dir() and not {path.name, path.suffix} & NOT_DICOM] == []
    assert len(compared) > 230


def test_a_ct_header_is_written_from_its_raw_values(tmp_path: Path) -> None:
    path = make_ct_series(tmp_path, slices=1, rows=8, columns=8)[0]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    got = instance_dict(ds, BASE)
    assert _text(got) == _text(pydicom_json(pydicom.dcmread(path, stop_before_pixels=True)))
    converted = [tag for tag in list(ds.keys()) if not isinstance(ds.get_item(tag), RawDataElement)]
    assert [ds[tag].keyword for tag in converted] == ["SpecificCharacterSet"]


def test_bulk_values_in_sequences_are_named_by_their_place_whatever_their_length() -> None:
    ds = Dataset()
    item = Dataset()
    item.add_new(0x00091010, "OB", b"\x01" * (BULK_THRESHOLD + 2))
    item.add_new(0x00091011, "OB", b"\x02" * 800)
    ds.add_new(0x00089215, "SQ", [item])
    ds.add_new(0x00091012, "OW", b"\x03" * 10)
    value = instance_dict(ds, BASE)["00089215"]["Value"][0]
    assert value["00091010"] == {"vr": "OB", "BulkDataURI": BASE + "00089215/1/00091010"}
    assert value["00091011"] == {"vr": "OB", "BulkDataURI": BASE + "00089215/1/00091011"}
    assert instance_dict(ds, BASE)["00091012"] == {"vr": "OW", "InlineBinary": "AwMDAwMDAwMDAw=="}
