"""The DICOM network service, driven by real peers over mutual TLS.

dcmtk's ``storescu``, ``findscu`` and ``echoscu`` (called by absolute path, with ``+tls``)
and pynetdicom's SCU talk to the archive's listener; ``pacs serve`` runs as a real
process where a crash or a clean stop is the point. Every check reads the archive back
(decrypting what was stored) or its audit trail.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category

from pacs.core.audit import EventID
from pacs.core.context import CA_CERT, Context
from storage.archive import NotFoundError
from storage.db import AuditRecord
from tests.conftest import SAMPLE_NAMES, NodeFiles, RunningDicom, assert_same_dataset, blob_store, read_stored
from tests.data.make_series import make_ct_series

REPO = Path(__file__).resolve().parent.parent
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
SUCCESS, PENDING, OUT_OF_RESOURCES, MOVE_DESTINATION_UNKNOWN = 0x0000, 0xFF00, 0xA700, 0xA801
TRAILING_PADDING = 0xFFFCFFFC

# dcmtk's storescu (3.6.7) proposes only uncompressed transfer syntaxes unless told otherwise,
# and with its default of every storage SOP class it has no presentation context left for the
# file's own syntax. So each sample is sent with -R (only the SOP classes of the files) and the
# -x option that proposes the file's own transfer syntax; with that, storescu sends every sample
# (no pynetdicom fallback needed).
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.1": "-xe",  # explicit VR little endian
    "1.2.840.10008.1.2": "-xi",  # implicit VR little endian
    "1.2.840.10008.1.2.2": "-xb",  # explicit VR big endian
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "-xx",  # JPEG extended
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE lossless
    "1.2.840.10008.1.2.1.99": "-xd",  # deflated explicit VR little endian
}


# -- helpers ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client_tls(node: NodeFiles) -> ssl.SSLContext:
    """A verifying TLS client context presenting `node`'s certificate and trusting the PACS CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.load_verify_locations(cafile=node.ca)
    return context


@contextmanager
def _association(
    dicom: RunningDicom,
    node: NodeFiles,
    contexts: list[PresentationContext],
    *,
    ext_neg: list[SCP_SCU_RoleSelectionNegotiation] | None = None,
    evt_handlers: list[tuple[Any, Callable[..., Any]]] | None = None,
) -> Iterator[Association]:
    """An established pynetdicom association with the listener, as `node`, over mutual TLS."""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.requested_contexts = contexts
    assoc = ae.associate(
        "127.0.0.1",
        dicom.port,
        ae_title=dicom.ae_title,
        tls_args=(_client_tls(node), "localhost"),
        ext_neg=ext_neg,
        evt_handlers=evt_handlers,
    )
    assert assoc.is_established, "the association with the PACS was not accepted"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def _storage() -> list[PresentationContext]:
    return [build_context(CTImageStorage, ExplicitVRLittleEndian)]


def _assert_same_values(received: Dataset, sent: Dataset) -> None:
    """The same elements with the same values, Pixel Data byte for byte.

    For sending, dcmtk drops (FFFC,FFFC) Data Set Trailing Padding and encodes encapsulated
    Pixel Data as OB (some samples say OW), so those two are not the receiver's doing.
    """
    expected = [elem.tag for elem in sent if elem.tag != TRAILING_PADDING]
    assert [elem.tag for elem in received] == expected
    for tag in expected:
        assert received[tag].value == sent[tag].value, f"{tag} {sent[tag].keyword} differs"
    assert received.PixelData == sent.PixelData


def _audit(
    pacs: Context, event_id: str, predicate: Callable[[AuditRecord], bool] = lambda r: True
) -> list[AuditRecord]:
    return [r for r in pacs.audit.records() if r.event_id == event_id and predicate(r)]


def _poll_audit(
    pacs: Context,
    event_id: str,
    predicate: Callable[[AuditRecord], bool],
    *,
    count: int,
    timeout: float = 5.0,
) -> list[AuditRecord]:
    """The matching audit records, waiting up to `timeout` seconds for `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = _audit(pacs, event_id, predicate)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _findscu_responses(result: subprocess.CompletedProcess[str], outdir: Path) -> list[Dataset]:
    assert result.returncode == 0, result.stderr
    return [pydicom.dcmread(path, force=True) for path in sorted(outdir.glob("rsp*.dcm"))]


def _store_files(pacs: Context, files: list[Path]) -> None:
    for path in files:
        pacs.archive.store(path)


# -- data -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct50(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """50 small CT slices of one series."""
    return make_ct_series(tmp_path_factory.mktemp("ct50"), slices=50, rows=64, columns=64, seed=50)


@dataclass(frozen=True)
class QueryData:
    """Three studies of two patients, for queries and retrieves."""

    quixote_study: str  # ct_dir: 6 CT slices of QUIXOTE^DULCINEA (PID-Q-7731)
    quixote_series: str
    quixote_instances: frozenset[str]
    quixote_files: tuple[Path, ...]
    quixote_second_study: str  # 3 more slices of the same patient, in another study
    panza_study: str  # 2 slices of PANZA^SANCHO (PID-P-0002)
    files: tuple[Path, ...]


@pytest.fixture(scope="module")
def query_files(tmp_path_factory: pytest.TempPathFactory, ct_dir: Path) -> QueryData:
    quixote = sorted(ct_dir.glob("*.dcm"))
    second = make_ct_series(
        tmp_path_factory.mktemp("quixote2"),
        slices=3,
        rows=32,
        columns=32,
        patient_name="QUIXOTE^DULCINEA",
        patient_id="PID-Q-7731",
        study_date="20240301",
        accession="ACC-Q-2",
    )
    panza = make_ct_series(
        tmp_path_factory.mktemp("panza"),
        slices=2,
        rows=32,
        columns=32,
        patient_name="PANZA^SANCHO",
        patient_id="PID-P-0002",
        accession="ACC-P-1",
    )
    first = pydicom.dcmread(quixote[0], stop_before_pixels=True)
    return QueryData(
        quixote_study=str(first.StudyInstanceUID),
        quixote_series=str(first.SeriesInstanceUID),
        quixote_instances=frozenset(_sop_uid(p) for p in quixote),
        quixote_files=tuple(quixote),
        quixote_second_study=_study_uid(second[0]),
        panza_study=_study_uid(panza[0]),
        files=tuple(quixote + second + panza),
    )


@pytest.fixture
def queryable(dicom: RunningDicom, query_files: QueryData) -> QueryData:
    """The query studies stored in the running archive."""
    _store_files(dicom.pacs, list(query_files.files))
    return query_files


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


# -- C-FIND -----------------------------------------------------------------------------------------


def test_findscu_study_root_study_level_returns_the_patients_studies(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu",
        node,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=PID-Q-7731",
        "-k",
        "StudyInstanceUID",
        "-k",
        "AccessionNumber",
        "-X",
        "-od",
        str(out),
    )

    responses = _findscu_responses(result, out)
    assert {str(r.StudyInstanceUID) for r in responses} == {
        queryable.quixote_study,
        queryable.quixote_second_study,
    }
    assert len(responses) == 2
    assert {str(r.AccessionNumber) for r in responses} == {"ACC0001", "ACC-Q-2"}
    assert {str(r.PatientID) for r in responses} == {"PID-Q-7731"}


def test_findscu_patient_root_patient_level_returns_the_matching_patient(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu",
        node,
        "-P",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientName=QUIXOTE*",
        "-k",
        "PatientID",
        "-X",
        "-od",
        str(out),
    )

    responses = _findscu_responses(result, out)
    assert [(str(r.PatientID), str(r.PatientName)) for r in responses] == [("PID-Q-7731", "QUIXOTE^DULCINEA")]


def test_findscu_is_refused_to_a_node_not_granted_find(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("MODALITY")  # store only
    out = tmp_path / "responses"
    out.mkdir()

    result = dicom.dcmtk(
        "findscu", node, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID", "-X", "-od", str(out)
    )

    # The listener accepts no query presentation context from it, so findscu has nothing to use.
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stderr
    assert list(out.glob("rsp*.dcm")) == []


def test_pynetdicom_find_at_series_level(dicom: RunningDicom, queryable: QueryData) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = queryable.quixote_study
    query.SeriesInstanceUID = ""
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""

    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))

    statuses = [status.Status for status, _ in responses]
    assert statuses == [PENDING, SUCCESS]
    match = responses[0][1]
    assert match.SeriesInstanceUID == queryable.quixote_series
    assert match.Modality == "CT"
    assert int(match.NumberOfSeriesRelatedInstances) == 6


def test_pynetdicom_find_at_image_level(dicom: RunningDicom, queryable: QueryData) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = queryable.quixote_study
    query.SeriesInstanceUID = queryable.quixote_series
    query.SOPInstanceUID = ""

    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))

    assert [status.Status for status, _ in responses] == [PENDING] * 6 + [SUCCESS]
    assert {str(identifier.SOPInstanceUID) for _, identifier in responses[:-1]} == (
        queryable.quixote_instances
    )


def test_patient_level_find_through_the_patient_root_model_with_pynetdicom(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "PID-P-0002"
    query.PatientName = ""

    with _association(dicom, node, [build_context(PatientRootQueryRetrieveInformationModelFind)]) as assoc:
        responses = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))

    assert [status.Status for status, _ in responses] == [PENDING, SUCCESS]
    assert str(responses[0][1].PatientName) == "PANZA^SANCHO"


# -- C-MOVE and C-GET -------------------------------------------------------------------------------


@dataclass
class Destination:
    """A pynetdicom storage SCP over TLS, enrolled as a C-MOVE destination."""

    node: NodeFiles
    received: list[Dataset]
    calling_ae_titles: list[str]


@contextmanager
def _move_destination(dicom: RunningDicom, ae_title: str = "VIEWER") -> Iterator[Destination]:
    port = _free_port()
    node = dicom.enrol(ae_title, allow="store", port=port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(node.cert, node.key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=dicom.pacs.settings.tls_dir / CA_CERT)
    destination = Destination(node, [], [])
    lock = threading.Lock()

    def on_store(event: Event) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        with lock:
            destination.received.append(dataset)
            destination.calling_ae_titles.append(str(event.assoc.requestor.ae_title).strip())
        return SUCCESS

    ae = AE(ae_title=ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, ssl_context=context, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield destination
    finally:
        server.shutdown()
        ae.shutdown()


def _move_study(
    dicom: RunningDicom, requester: NodeFiles, study_uid: str, destination: str
) -> list[tuple[Dataset, Dataset | None]]:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    with _association(dicom, requester, [build_context(StudyRootQueryRetrieveInformationModelMove)]) as assoc:
        return list(assoc.send_c_move(query, destination, StudyRootQueryRetrieveInformationModelMove))


def test_c_move_sends_every_instance_of_the_study_to_the_enrolled_destination(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    requester = dicom.enrol("WORKSTATION", allow="store,find,move")
    with _move_destination(dicom) as destination:
        responses = _move_study(dicom, requester, queryable.quixote_study, "VIEWER")

    assert {str(ds.SOPInstanceUID) for ds in destination.received} == queryable.quixote_instances
    assert len(destination.received) == 6
    assert set(destination.calling_ae_titles) == {dicom.ae_title}
    by_uid = {_sop_uid(p): p for p in queryable.quixote_files}
    for dataset in destination.received:
        assert_same_dataset(dataset, pydicom.dcmread(by_uid[str(dataset.SOPInstanceUID)]))

    *pending, (final, _) = responses
    assert [status.Status for status, _ in pending] == [PENDING] * len(pending)
    remaining = [int(status.NumberOfRemainingSuboperations) for status, _ in pending]
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] <= 1
    assert final.Status == SUCCESS
    assert final.NumberOfCompletedSuboperations == 6
    assert final.NumberOfFailedSuboperations == 0
    assert final.NumberOfWarningSuboperations == 0


def test_c_move_to_an_enrolled_destination_is_audited_with_that_destination(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    requester = dicom.enrol("WORKSTATION", allow="store,find,move")
    with _move_destination(dicom):
        responses = _move_study(dicom, requester, queryable.quixote_study, "VIEWER")
    assert responses, "the C-MOVE got no response"

    records = _audit(
        dicom.pacs,
        EventID.INSTANCES_TRANSFERRED,
        lambda r: r.action == "R" and json.loads(r.details).get("what") == "C-MOVE",
    )
    assert len(records) == 1
    assert records[0].user_id == "WORKSTATION"
    assert records[0].source == "127.0.0.1"
    assert json.loads(records[0].details) == {"what": "C-MOVE", "destination": "VIEWER", "instances": 6}


def test_c_move_to_a_destination_that_is_not_enrolled_is_refused_and_audited(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    requester = dicom.enrol("WORKSTATION", allow="store,find,move")

    responses = _move_study(dicom, requester, queryable.quixote_study, "STRANGER")

    assert [status.Status for status, _ in responses] == [MOVE_DESTINATION_UNKNOWN]
    alerts = _audit(
        dicom.pacs, EventID.SECURITY_ALERT, lambda r: json.loads(r.details).get("what") == "C-MOVE refused"
    )
    assert [(r.user_id, r.outcome, json.loads(r.details)["destination"]) for r in alerts] == [
        ("WORKSTATION", 4, "STRANGER")
    ]
    assert _audit(dicom.pacs, EventID.INSTANCES_TRANSFERRED) == []


def test_c_get_returns_every_instance_over_the_same_association(
    dicom: RunningDicom, queryable: QueryData
) -> None:
    node = dicom.enrol("WORKSTATION", allow="get")
    received: list[Dataset] = []

    def on_store(event: Event) -> int:
        received.append(event.dataset)
        return SUCCESS

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = queryable.quixote_study
    with _association(
        dicom,
        node,
        [build_context(StudyRootQueryRetrieveInformationModelGet), *_storage()],
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    ) as assoc:
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))

    assert {str(ds.SOPInstanceUID) for ds in received} == queryable.quixote_instances
    assert len(received) == 6
    *pending, (final, _) = responses
    assert [status.Status for status, _ in pending] == [PENDING] * 6
    assert [int(status.NumberOfRemainingSuboperations) for status, _ in pending] == [5, 4, 3, 2, 1, 0]
    assert final.Status == SUCCESS
    assert final.NumberOfCompletedSuboperations == 6
    assert final.NumberOfFailedSuboperations == 0
    assert final.NumberOfWarningSuboperations == 0


# -- refusals ---------------------------------------------------------------------------------------


def _ct_dataset(path: Path) -> Dataset:
    """A copy of a CT slice under a new SOP Instance UID."""
    dataset = pydicom.dcmread(path)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return dataset


def _traversal_study_uid(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    dataset.StudyInstanceUID = "../../etc"
    return dataset


def _missing_study_uid(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    del dataset.StudyInstanceUID
    return dataset


def _truncated_pixel_data(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    whole = tmp / "whole.dcm"
    dataset.save_as(whole, enforce_file_format=True)
    cut = tmp / "truncated.dcm"
    cut.write_bytes(whole.read_bytes()[:-1000])
    return cut


def _garbage_after_file_meta(path: Path, tmp: Path) -> Dataset | Path:
    dataset = _ct_dataset(path)
    meta_only = tmp / "meta.dcm"
    empty = Dataset()
    empty.file_meta = FileMetaDataset(dataset.file_meta)
    empty.save_as(meta_only, enforce_file_format=True)
    garbage = tmp / "garbage.dcm"
    garbage.write_bytes(meta_only.read_bytes() + random.Random(7).randbytes(3002))
    return garbage


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.filterwarnings("ignore:Expected explicit VR")
@pytest.mark.parametrize(
    "make_bad",
    [_traversal_study_uid, _missing_study_uid, _truncated_pixel_data, _garbage_after_file_meta],
    ids=["study-uid-is-a-path", "study-uid-missing", "truncated-pixel-data", "garbage-after-file-meta"],
)
def test_a_bad_dataset_gets_a_failure_with_a_reason_and_the_association_goes_on(
    dicom: RunningDicom,
    ct_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_bad: Callable[[Path, Path], Dataset | Path],
) -> None:
    # Files are sent as they are on disk (not decoded and re-encoded by pynetdicom), so the
    # truncated and garbage bodies really go over the wire.
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    slices = sorted(ct_dir.glob("*.dcm"))
    bad = make_bad(slices[0], tmp_path)
    bad_uid = str(bad.SOPInstanceUID) if isinstance(bad, Dataset) else _meta_sop_uid(bad)
    node = dicom.enrol("MODALITY")

    with _association(dicom, node, _storage()) as assoc:
        refused = assoc.send_c_store(bad)
        still_established = assoc.is_established
        accepted = assoc.send_c_store(slices[1])

    assert code_to_category(refused.Status) == "Failure", hex(refused.Status)
    assert str(refused.get("ErrorComment", "")).strip(), "a refusal must say why"
    assert still_established
    assert accepted.Status == SUCCESS
    with pytest.raises(NotFoundError):
        dicom.pacs.archive.instance(bad_uid)
    assert dicom.pacs.archive.instance(_sop_uid(slices[1])).sop_uid == _sop_uid(slices[1])
    report = dicom.pacs.archive.verify()
    assert report.ok and report.checked == 1
    assert report.orphans == [] and report.temp_files == []


def _meta_sop_uid(path: Path) -> str:
    return str(pydicom.filereader.read_file_meta_info(path).MediaStorageSOPInstanceUID)


def test_free_disk_below_the_watermark_answers_out_of_resources_and_stores_nothing(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    archive = dicom.pacs.archive
    archive.min_free_bytes = shutil.disk_usage(dicom.pacs.settings.blob_dir).free + 2**40
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]

    with _association(dicom, node, _storage()) as assoc:
        status = assoc.send_c_store(pydicom.dcmread(path))

    assert status.Status == OUT_OF_RESOURCES
    assert str(status.get("ErrorComment", "")).strip()
    with pytest.raises(NotFoundError):
        archive.instance(_sop_uid(path))
    report = archive.verify()
    assert report.checked == 0 and report.orphans == [] and report.temp_files == []
    assert list(blob_store(dicom.pacs).blob_ids()) == []
    assert not (dicom.pacs.settings.data_dir / "incoming").exists()


def test_an_object_larger_than_the_maximum_is_refused(dicom: RunningDicom, ct_dir: Path) -> None:
    archive = dicom.pacs.archive
    archive.max_object_bytes = 1000
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]
    assert path.stat().st_size > 1000

    with _association(dicom, node, _storage()) as assoc:
        status = assoc.send_c_store(pydicom.dcmread(path))

    assert status.Status == OUT_OF_RESOURCES
    assert "limit" in str(status.get("ErrorComment", ""))
    with pytest.raises(NotFoundError):
        archive.instance(_sop_uid(path))
    assert archive.verify().checked == 0
    assert list(blob_store(dicom.pacs).blob_ids()) == []
    assert not (dicom.pacs.settings.data_dir / "incoming").exists()


# -- audit ------------------------------------------------------------------------------------------


def test_a_store_association_is_audited_once_per_study_with_counts(
    dicom: RunningDicom, query_files: QueryData
) -> None:
    node = dicom.enrol("MODALITY")
    files = list(query_files.files)  # 6 + 3 slices of one patient, 2 of another

    result = dicom.dcmtk("storescu", node, "-R", files=files)
    assert result.returncode == 0, result.stderr

    def by_modality(record: AuditRecord) -> bool:
        counted = "stored" in json.loads(record.details)
        return record.user_id == "MODALITY" and record.action == "C" and counted

    records = _poll_audit(dicom.pacs, EventID.INSTANCES_TRANSFERRED, by_modality, count=3)
    summary = {r.study_uid: (r.patient_id, r.source, r.outcome, json.loads(r.details)) for r in records}
    counts = {"duplicates": 0, "new_versions": 0}
    assert summary == {
        query_files.quixote_study: ("PID-Q-7731", "127.0.0.1", 0, {"stored": 6, **counts}),
        query_files.quixote_second_study: ("PID-Q-7731", "127.0.0.1", 0, {"stored": 3, **counts}),
        query_files.panza_study: ("PID-P-0002", "127.0.0.1", 0, {"stored": 2, **counts}),
    }
    assert len(records) == 3


def test_a_study_is_audited_durably_before_its_first_object_is_acknowledged(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    node = dicom.enrol("MODALITY")
    path = sorted(ct_dir.glob("*.dcm"))[0]
    sent = pydicom.dcmread(path)
    with _association(dicom, node, _storage()) as assoc:
        assert assoc.send_c_store(sent).Status == SUCCESS
        # The association is still open: only the announcement can be there yet.
        announced = _audit(
            dicom.pacs,
            EventID.INSTANCES_TRANSFERRED,
            lambda r: r.user_id == "MODALITY" and r.study_uid == sent.StudyInstanceUID,
        )
        assert [(r.patient_id, r.action) for r in announced] == [("PID-Q-7731", "C")]
        assert assoc.send_c_store(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[1])).Status == SUCCESS
    records = _poll_audit(
        dicom.pacs,
        EventID.INSTANCES_TRANSFERRED,
        lambda r: r.user_id == "MODALITY" and r.study_uid == sent.StudyInstanceUID,
        count=2,
    )
    assert [json.loads(r.details).get("stored") for r in records] == [None, 2]


def test_each_c_find_is_audited_as_a_query_with_its_keys(
    dicom: RunningDicom, queryable: QueryData, tmp_path: Path
) -> None:
    node = dicom.enrol("WORKSTATION", allow="store,find")
    result = dicom.dcmtk(
        "findscu",
        node,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        "PatientID=PID-Q-7731",
        "-k",
        "StudyInstanceUID",
    )
    assert result.returncode == 0, result.stderr
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = queryable.quixote_study
    query.Modality = "CT"
    with _association(dicom, node, [build_context(StudyRootQueryRetrieveInformationModelFind)]) as assoc:
        assert list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))[-1][0].Status == 0

    records = _poll_audit(dicom.pacs, EventID.QUERY, lambda r: r.user_id == "WORKSTATION", count=2)
    assert len(records) == 2
    study_query, series_query = (json.loads(r.details) for r in records)
    assert study_query["level"] == "STUDY"
    assert study_query["keys"]["PatientID"] == "PID-Q-7731"
    assert study_query["matches"] == 2
    assert records[0].patient_id == "PID-Q-7731"
    assert series_query["level"] == "SERIES"
    assert series_query["keys"]["StudyInstanceUID"] == queryable.quixote_study
    assert series_query["keys"]["Modality"] == "CT"
    assert series_query["matches"] == 1
    assert records[1].study_uid == queryable.quixote_study
