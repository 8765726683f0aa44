"""C-MOVE and C-GET over mutual TLS: every instance of the study reaches the peer, and is audited."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pacs.core.audit import EventID
from pacs.core.context import CA_CERT
from tests.conftest import (
    NodeFiles,
    RunningDicom,
    _free_port,
    assert_same_dataset,
)
from tests.dicom.helpers import (
    MOVE_DESTINATION_UNKNOWN,
    PENDING,
    SUCCESS,
    QueryData,
    _association,
    _audit,
    _sop_uid,
    _storage,
)

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
