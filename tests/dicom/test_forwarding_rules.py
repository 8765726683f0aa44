"""``[[route]]`` rules over the wire: a study pushed to the archive is queued for, and sent to, a node.

The archive's DICOM listener runs with routes (its handlers' ``delivered`` set as ``pacs serve``
sets it from pacs.toml); studies are pushed by dcmtk's ``storescu +tls`` and by pynetdicom, and
the forwarder sends what the rules queued to ``storescp +tls`` or a pynetdicom peer.
"""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import CTImageStorage

from pacs.core.config_routes import Route
from pacs.dicom.forwarder import Forwarder
from pacs.ops.forward_queue import SENT, ForwardQueue, Job
from pacs.ops.forwarding import Forwarding
from tests.conftest import NodeFiles, RunningDicom
from tests.dicom.forward_peers import enrol_destination, pynetdicom_peer, storescp
from tests.dicom.helpers import STORESCU_PROPOSE, _association, _sop_uid, _study_uid


def _route(dicom: RunningDicom, *routes: Route) -> ForwardQueue:
    """Give the running listener `routes`, as pacs serve does from pacs.toml; the archive's queue."""
    forwarding = Forwarding(dicom.pacs.database, dicom.pacs.audit, routes)
    dicom.server.handlers.delivered = forwarding.delivered
    return forwarding.queue


def _jobs_after_close(queue: ForwardQueue, count: int, timeout: float = 10.0) -> list[Job]:
    """The queue's jobs, once `count` are there (the association's close queues them) or the time is up."""
    deadline = time.monotonic() + timeout
    while len(queue.jobs()) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return queue.jobs()


def _push(dicom: RunningDicom, node: NodeFiles, files: list[Path]) -> None:
    """Store `files` as `node` with pynetdicom, on one association."""
    with _association(dicom, node, [build_context(CTImageStorage, ExplicitVRLittleEndian)]) as assoc:
        for path in files:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000


def test_a_rule_forwards_a_study_pushed_by_storescu_to_storescp(
    dicom: RunningDicom, ct_dir: Path, tmp_path: Path
) -> None:
    files = sorted(ct_dir.glob("*.dcm"))
    modality = dicom.enrol("CT1")
    node, port = enrol_destination(dicom, "STORESCP")
    queue = _route(dicom, Route(name="ct-out", from_ae="CT1", modality="CT", to="STORESCP"))

    pushed = dicom.dcmtk("storescu", modality, STORESCU_PROPOSE["1.2.840.10008.1.2.1"], files=files)
    assert pushed.returncode == 0, pushed.stderr
    (job,) = _jobs_after_close(queue, 1)
    assert (job.study_uid, job.destination, job.requested_by) == (
        _study_uid(files[0]),
        "STORESCP",
        "route:ct-out",
    )

    with storescp(node, port, tmp_path / "received") as outdir:
        (done,) = Forwarder(dicom.pacs, queue).run_due()
    assert done.state == SENT
    received = {str(pydicom.dcmread(path).SOPInstanceUID) for path in outdir.iterdir()}
    assert received == {_sop_uid(path) for path in files}


def test_a_rule_queues_each_study_once_per_association_and_sends_it_to_a_pynetdicom_peer(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    files = sorted(ct_dir.glob("*.dcm"))
    modality = dicom.enrol("CT1")
    node, port = enrol_destination(dicom, "TELERAD")
    queue = _route(dicom, Route(name="all", to="TELERAD"))

    _push(dicom, modality, files[:3])
    _push(dicom, modality, files[3:])
    first, second = sorted(_jobs_after_close(queue, 2), key=lambda job: job.id)
    assert {first.study_uid, second.study_uid} == {_study_uid(files[0])}
    _push(dicom, modality, files)  # nothing new: every object is already stored
    assert len(_jobs_after_close(queue, 3, timeout=1.0)) == 2

    with pynetdicom_peer(dicom, node, port) as peer:
        done = Forwarder(dicom.pacs, queue).run_due()
    assert [job.state for job in done] == [SENT, SENT]
    assert sorted(set(peer.received)) == sorted(_sop_uid(path) for path in files)


def test_a_rule_for_another_modality_or_node_queues_nothing(dicom: RunningDicom, ct_dir: Path) -> None:
    files = sorted(ct_dir.glob("*.dcm"))[:2]
    modality = dicom.enrol("CT1")
    enrol_destination(dicom, "TELERAD")
    queue = _route(
        dicom,
        Route(name="mr-only", modality="MR", to="TELERAD"),
        Route(name="from-ct2", from_ae="CT2", to="TELERAD"),
    )
    _push(dicom, modality, files)
    assert _jobs_after_close(queue, 1, timeout=1.0) == []


def test_a_rule_never_sends_a_study_back_to_the_node_it_came_from(dicom: RunningDicom, ct_dir: Path) -> None:
    files = sorted(ct_dir.glob("*.dcm"))[:2]
    node, _ = enrol_destination(dicom, "PEERPACS")
    queue = _route(dicom, Route(name="mirror", to="PEERPACS"))
    _push(dicom, node, files)
    assert _jobs_after_close(queue, 1, timeout=1.0) == []
