"""The receive path (issue #10) under crashes and outages, from the outside, with real peers.

The contract these tests hold the archive to:

- A C-STORE is answered Success only once the object's encrypted blob is fdatasynced under its final
  name. The index commit is not flushed: the blob is the source of truth, and every complete blob the
  index lacks is re-indexed from its own header at ``pacs serve`` start-up, by ``pacs verify`` and by a
  sweep every ``[storage] sweep_seconds`` (``PACS_STORAGE_SWEEP_SECONDS``). A complete blob is never
  deleted for being unreferenced.
- The audit record naming a study an association delivers is durable before that study's first object
  is acknowledged; re-indexing is audited too.
- While PostgreSQL is down an object in flight is answered 0xA700 or 0x0110 on the same association, its
  blob is kept, and new associations are rejected as transient; once the database is back, the same
  ``pacs serve`` accepts associations again and the sweep indexes the kept blobs.

Every test runs the real ``pacs`` command (``serve`` in a process group of its own, SIGKILLed whole) and
dcmtk's ``storescu`` or pynetdicom over mutual TLS.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification
from sqlalchemy import delete, func, select, update

from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from storage.archive import NotFoundError
from storage.models import Instance, Series, Study
from tests.conftest import NodeFiles, report_figure
from tests.data.make_series import make_ct_series
from tests.storage.crash_helpers import (
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SUCCESS,
    ArchiveDir,
    PostgresCluster,
    StorescuPush,
    after_file_meta,
    audit_records,
    create_archive,
    pacs,
    serving,
    sop_uid_of,
    study_uid_of,
    wait_until,
)

SEED = 20261201
ROUNDS = 5
SWEEP = {"PACS_STORAGE_SWEEP_SECONDS": "2"}
OUTAGE_STATUSES = (OUT_OF_RESOURCES, PROCESSING_FAILURE)


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """300 CT slices of 64x64 with fresh UIDs: ten studies (of ten patients) of 30 slices, in order."""
    root = tmp_path_factory.mktemp("ct300")
    files: list[Path] = []
    for n in range(10):
        files += make_ct_series(
            root / f"study{n}", slices=30, rows=64, columns=64, patient_id=f"PID-CRASH-{n}", seed=n
        )
    return files


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """One series of 40 CT slices of 64x64 with fresh UIDs."""
    return make_ct_series(tmp_path_factory.mktemp("ct40"), slices=40, rows=64, columns=64)


# -- looking into the archive -----------------------------------------------------------------------


@contextmanager
def opened(data: Path) -> Iterator[Context]:
    """The archive in `data`, opened in this process as any tool of the project opens it."""
    archive = open_pacs(load_settings(data, {}))
    try:
        yield archive
    finally:
        archive.close()


def indexed(archive: Context, sop_uid: str) -> bool:
    """Whether the index has a current version of `sop_uid`."""
    try:
        archive.archive.instance(sop_uid)
    except NotFoundError:
        return False
    return True


def assert_stored_as_sent(archive: Context, sent: Path) -> None:
    """The archive returns the data set of `sent` byte for byte (the file meta is the archive's own)."""
    uid = sop_uid_of(sent)
    with archive.archive.open(uid) as stream:
        stored = stream.read()
    assert after_file_meta(stored) == after_file_meta(sent.read_bytes()), f"{uid} differs from {sent.name}"


def blob_files(data: Path) -> dict[str, Path]:
    """The finished blob files of the archive in `data`, by blob id (their name)."""
    return {path.stem: path for path in (data / "blobs").rglob("*.blob")}


def lose_index_rows(archive: Context, sop_uids: list[str]) -> None:
    """Delete the instance rows of `sop_uids` behind the archive's back, as a lost commit would.

    An unflushed commit is lost whole, with the counts it incremented, so the series and study
    counts are decremented in the same transaction and the index stays consistent.
    """
    with archive.database.write() as session:
        lost_per_series = session.execute(
            select(Instance.series_fk, func.count(), func.sum(Instance.frames))
            .where(Instance.sop_uid.in_(sop_uids), Instance.is_current.is_(True))
            .group_by(Instance.series_fk)
        ).all()
        session.execute(delete(Instance).where(Instance.sop_uid.in_(sop_uids)))
        for series_fk, lost, frames in lost_per_series:
            session.execute(
                update(Series)
                .where(Series.id == series_fk)
                .values(num_instances=Series.num_instances - lost, num_frames=Series.num_frames - frames)
            )
            study_fk = select(Series.study_fk).where(Series.id == series_fk).scalar_subquery()
            session.execute(
                update(Study)
                .where(Study.id == study_fk)
                .values(num_instances=Study.num_instances - lost, num_frames=Study.num_frames - frames)
            )


# -- a pynetdicom peer --------------------------------------------------------------------------------


def node_context(node: NodeFiles) -> ssl.SSLContext:
    """A TLS client context presenting `node`'s certificate and trusting the archive's CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the archive is addressed by IP; its certificate is still verified
    context.load_verify_locations(cafile=node.ca)
    context.load_cert_chain(node.cert, node.key)
    return context


def associate(node: NodeFiles, port: int) -> Association:
    """Request a Verification association as `node` over mutual TLS."""
    ae = AE(ae_title=node.ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="PACS", tls_args=(node_context(node), None))


def echo_accepted(node: NodeFiles, port: int) -> bool:
    """Whether a new association is accepted and answers a C-ECHO with Success."""
    assoc = associate(node, port)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == SUCCESS
    finally:
        assoc.release()


def rejection(assoc: Association) -> str:
    """How an association request ended, for failure messages."""
    if assoc.is_established:
        return "it was accepted"
    if not assoc.is_rejected:
        return "it was aborted or the connection failed, not rejected with an A-ASSOCIATE-RJ"
    answer = assoc.acceptor.primitive
    return f"rejected: {answer.result_str} (result {answer.result}), {answer.source_str}, {answer.reason_str}"


# -- the tests ----------------------------------------------------------------------------------------


def test_sigkill_at_random_moments_loses_no_acknowledged_object(
    tmp_path: Path, db_url: str, studies: list[Path], request: pytest.FixtureRequest
) -> None:
    archive = create_archive(tmp_path, db_url)
    by_uid = {sop_uid_of(path): path for path in studies}
    rng = random.Random(SEED)
    acknowledged: set[str] = set()
    rounds: list[str] = []
    killed_mid_push = 0
    for round_ in range(ROUNDS):
        pending = [path for uid, path in by_uid.items() if uid not in acknowledged]
        if len(pending) < 2:
            break
        with serving(archive, tmp_path / f"serve-{round_}.log") as served:
            newly, mid_push = _kill_during_a_push(archive, served.port, pending, rng, served.kill)
        assert newly <= set(by_uid), "storescu acknowledged objects it was not given"
        acknowledged |= newly
        killed_mid_push += mid_push
        rounds.append(f"{len(newly)} acknowledged" + ("" if mid_push else " (push had ended)"))
    report_figure(request.config, f"SIGKILL rounds ({request.node.callspec.id})", ", ".join(rounds))
    assert acknowledged, "storescu saw no object acknowledged in any round"
    assert killed_mid_push >= 3, f"too few kills landed during a push: {rounds}"

    # Start once more (the start-up re-indexes what the index lacks), then stop cleanly.
    with serving(archive, tmp_path / "serve-final.log") as served:
        with opened(archive.data) as pacs_archive:
            wait_until(lambda: all(indexed(pacs_archive, uid) for uid in acknowledged), 60, 0.5)
        assert served.stop() == 0, served.log_tail()

    with opened(archive.data) as pacs_archive:
        lost = sorted(uid for uid in acknowledged if not indexed(pacs_archive, uid))
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged objects are lost, e.g. {lost[:3]}"
        for uid in sorted(acknowledged):
            assert_stored_as_sent(pacs_archive, by_uid[uid])
    verify = pacs("verify", "--data", str(archive.data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with opened(archive.data) as pacs_archive:
        stored = {study_uid_of(path) for uid, path in by_uid.items() if indexed(pacs_archive, uid)}
    audited = {record["study_uid"] for record in audit_records(archive.data)}
    unaudited = stored - audited
    assert not unaudited, f"{len(unaudited)} of {len(stored)} stored studies have no audit record"
    chain = pacs("audit", "verify", "--data", str(archive.data))
    assert chain.returncode == 0, chain.stdout + chain.stderr


def _kill_during_a_push(
    archive: ArchiveDir, port: int, files: list[Path], rng: random.Random, kill: Callable[[], None]
) -> tuple[set[str], bool]:
    """Push `files` with storescu and `kill` the server at a random moment of the push.

    The moment is once a random number of objects (up to half of `files`) were acknowledged, plus
    a random 0-50 ms, so that it falls anywhere on an object's way from the socket to its ack, and
    within the push however fast the archive is (after a fixed delay a fast one would be done).
    Returns the SOP Instance UIDs storescu saw acknowledged, and whether it was still pushing.
    """
    target = rng.randint(0, len(files) // 2)
    jitter = rng.uniform(0.0, 0.05)
    with StorescuPush(archive.node, port, files) as push:
        wait_until(lambda: len(push.acknowledged()) >= target or not push.running, 60, 0.002)
        time.sleep(jitter)
        mid_push = push.running
        kill()
        push.wait(timeout=60)
    return push.acknowledged(), mid_push


def test_index_rows_lost_behind_the_archives_back_are_rebuilt_by_the_sweep(
    tmp_path: Path, db_url: str, forty: list[Path]
) -> None:
    archive = create_archive(tmp_path, db_url)
    with serving(archive, tmp_path / "serve-store.log", SWEEP) as served:
        with StorescuPush(archive.node, served.port, forty) as push:
            assert push.wait(timeout=120) == 0, push.log_tail()
        assert len(push.acknowledged()) == len(forty), push.log_tail()
        assert served.stop() == 0, served.log_tail()  # every record of the association is written

    by_uid = {sop_uid_of(path): path for path in forty}
    lost = sorted(by_uid)[::5]
    study = study_uid_of(forty[0])
    with serving(archive, tmp_path / "serve-sweep.log", SWEEP) as served:
        newest = max(record["seq"] for record in audit_records(archive.data))
        with opened(archive.data) as pacs_archive:
            lose_index_rows(pacs_archive, lost)
            assert not any(indexed(pacs_archive, uid) for uid in lost)
            wait_until(lambda: all(indexed(pacs_archive, uid) for uid in lost), 20, 0.25)
            missing = [uid for uid in lost if not indexed(pacs_archive, uid)]
            assert not missing, f"no sweep re-indexed {len(missing)} of {len(lost)} lost rows in 20 s"
            for uid in lost:
                assert_stored_as_sent(pacs_archive, by_uid[uid])

        def reindexing_audited() -> bool:
            records = audit_records(archive.data)
            return any(r["seq"] > newest and r["study_uid"] == study for r in records)

        assert wait_until(reindexing_audited, 10, 0.5), f"no audit record names study {study} re-indexed"
        assert served.running, "pacs serve died"
        assert served.stop() == 0, served.log_tail()
    verify = pacs("verify", "--data", str(archive.data))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_postgresql_outage_mid_push_loses_nothing_and_rejects_new_peers_transiently(
    tmp_path: Path, studies: list[Path]
) -> None:
    cluster = PostgresCluster()
    try:
        cluster.start()
        archive = create_archive(tmp_path, cluster.create_database("pacs"))
        with serving(archive, tmp_path / "serve.log", SWEEP) as served:
            push = _push_through_an_outage(archive, served.port, studies, cluster)
            kept = blob_files(archive.data)
            failed = [r for r in push.responses() if r.status != SUCCESS]
            assert failed, (
                f"no object was answered with a failure status ({len(push.acknowledged())} of {len(studies)}"
                f" acknowledged; did the push end before the outage?):\n{push.log_tail()}"
            )
            other = sorted({f"0x{r.status:04X}" for r in failed if r.status not in OUTAGE_STATUSES})
            assert not other, f"objects in flight were answered {other}, not 0xA700 or 0x0110"
            answered = len(push.responses())
            assert answered == len(studies), f"only {answered} objects answered: the association was not kept"

            during = associate(archive.node, served.port)
            assert during.is_rejected and during.acceptor.primitive.result == 2, (
                f"a new association during the outage must be rejected as transient; {rejection(during)}"
            )

            cluster.start()
            assert wait_until(lambda: echo_accepted(archive.node, served.port), 30, 0.5), (
                "pacs serve did not accept associations within 30 s of PostgreSQL's return"
            )
            _assert_all_indexed(archive, push.acknowledged(), kept)
            by_uid = {sop_uid_of(path): path for path in studies}
            with opened(archive.data) as pacs_archive:
                for uid in sorted(push.acknowledged()):
                    assert_stored_as_sent(pacs_archive, by_uid[uid])
            assert served.running, "pacs serve died during the outage"
            assert served.stop() == 0, served.log_tail()
        verify = pacs("verify", "--data", str(archive.data))
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        cluster.remove()


def _push_through_an_outage(
    archive: ArchiveDir, port: int, files: list[Path], cluster: PostgresCluster
) -> StorescuPush:
    """Push `files` (storescu -nh: go on after a failed store); stop PostgreSQL once 20 are acknowledged."""
    with StorescuPush(archive.node, port, files, "-nh") as push:
        wait_until(lambda: len(push.acknowledged()) >= 20 or not push.running, 60, 0.02)
        assert push.running, f"the push ended before PostgreSQL was stopped:\n{push.log_tail()}"
        cluster.stop()
        push.wait(timeout=90)
    return push


def _assert_all_indexed(archive: ArchiveDir, acknowledged: set[str], kept: dict[str, Path]) -> None:
    """Within 30 s every acknowledged object and every blob kept through the outage is indexed."""
    with opened(archive.data) as pacs_archive:

        def blobs_indexed() -> set[str]:
            with pacs_archive.database.read() as session:
                return set(session.scalars(select(Instance.blob_id)))

        wait_until(
            lambda: all(indexed(pacs_archive, uid) for uid in acknowledged) and set(kept) <= blobs_indexed(),
            30,
            0.5,
        )
        lost = [uid for uid in acknowledged if not indexed(pacs_archive, uid)]
        assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged objects are not in the index"
        deleted = sorted(blob for blob, path in kept.items() if not path.exists())
        assert not deleted, f"{len(deleted)} of {len(kept)} blobs on disk after the outage were deleted"
        unindexed = set(kept) - blobs_indexed()
        assert not unindexed, f"the sweep did not index {len(unindexed)} of {len(kept)} blobs kept through it"
