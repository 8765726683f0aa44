"""The forwarding queue and rules on both index backends: durable jobs, back-off, giving up, retry, routes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from pacs.core.config import parse_settings
from pacs.core.config_routes import Route, RouteError
from pacs.core.context import Context, open_pacs
from pacs.ops import selfcheck
from pacs.ops.forward_queue import FAILED, PENDING, SENT, Attempt, ForwardError, ForwardQueue, RetryPolicy
from pacs.ops.forwarding import Forwarding, RouteCheckError, check_routes, route_problems
from pacs.ops.selfcheck.forwarding import check_forwarding
from pacs.ops.selfcheck.report import Finding, Note
from storage.models import Study
from tests.ops.forward_helpers import enrol_node
from tests.ops.trash_helpers import TrashFiles, make_trash_files, store, uid_of

DOWN = Attempt(0, 3, error="TELERAD did not accept an association")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TrashFiles:
    return make_trash_files(tmp_path_factory.mktemp("forward-queue"))


@pytest.fixture
def filled(pacs: Context, files: TrashFiles) -> Context:
    """The archive with three studies, TELERAD (with a port) and CT1 (without) enrolled."""
    store(pacs, files.all)
    enrol_node(pacs, "TELERAD", 11112)
    enrol_node(pacs, "CT1", None)
    return pacs


def test_a_job_is_committed_before_enqueue_returns_and_survives_reopening(
    filled: Context, files: TrashFiles
) -> None:
    job = ForwardQueue(filled.database).enqueue("TELERAD", uid_of(files.first[0]), requested_by="alice")
    again = open_pacs(filled.settings)
    try:
        (kept,) = ForwardQueue(again.database).jobs(PENDING)
    finally:
        again.close()
    assert kept == job
    assert (kept.state, kept.attempts, kept.next_attempt_at) == (PENDING, 0, kept.created_at)


def test_each_failed_attempt_moves_the_next_one_on_by_a_doubling_back_off_up_to_the_cap(
    filled: Context, files: TrashFiles
) -> None:
    policy = RetryPolicy(base=timedelta(seconds=30), cap=timedelta(minutes=2), max_attempts=10)
    queue = ForwardQueue(filled.database, policy)
    job = queue.enqueue("TELERAD", uid_of(files.first[0]), requested_by="alice")
    now = job.created_at
    gaps = []
    for _ in range(4):
        claimed = queue.claim(now)
        assert claimed is not None and claimed.id == job.id
        assert queue.claim(now) is None  # not due again until its back-off has passed
        ended = queue.finish(claimed, DOWN, now)
        gaps.append(ended.next_attempt_at - now)
        now = ended.next_attempt_at
    assert gaps == [timedelta(seconds=s) for s in (30, 60, 120, 120)]
    assert (ended.state, ended.attempts, ended.last_error) == (PENDING, 4, DOWN.error)


def test_a_job_is_failed_after_the_attempt_limit_or_the_age_limit_and_retry_puts_it_back(
    filled: Context, files: TrashFiles
) -> None:
    queue = ForwardQueue(
        filled.database, RetryPolicy(base=timedelta(0), max_attempts=2, max_age=timedelta(hours=1))
    )
    by_attempts = queue.enqueue("TELERAD", uid_of(files.first[0]), requested_by="alice")
    by_age = queue.enqueue("TELERAD", uid_of(files.second[0]), requested_by="alice")
    now = by_age.created_at
    ends = []
    for later in (timedelta(0), timedelta(0), timedelta(hours=2)):
        claimed = queue.claim(now)
        assert claimed is not None
        ends.append((claimed.id, queue.finish(claimed, DOWN, now + later).state))
    assert ends == [(by_attempts.id, PENDING), (by_attempts.id, FAILED), (by_age.id, FAILED)]
    assert queue.claim(now + timedelta(days=1)) is None
    assert [job.id for job in queue.jobs(FAILED)] == [by_age.id, by_attempts.id]

    back = queue.retry(by_attempts.id)
    assert (back.state, back.attempts, back.finished_at) == (PENDING, 0, None)
    assert [job.id for job in queue.jobs(PENDING)] == [by_attempts.id]


def test_a_sent_job_cannot_be_retried_or_cancelled(filled: Context, files: TrashFiles) -> None:
    queue = ForwardQueue(filled.database)
    job = queue.enqueue("TELERAD", uid_of(files.first[0]), requested_by="alice")
    claimed = queue.claim()
    assert claimed is not None
    assert queue.finish(claimed, Attempt(3, 0, commitment="confirmed")).state == SENT
    with pytest.raises(ForwardError, match="was sent already"):
        queue.retry(job.id)
    with pytest.raises(ForwardError, match="is sent, not pending"):
        queue.cancel(job.id, by="alice")
    assert queue.counts() == {PENDING: 0, FAILED: 0, SENT: 1}


def test_a_node_without_a_port_or_enrolled_with_a_network_cannot_be_sent_to(
    filled: Context, files: TrashFiles
) -> None:
    queue = ForwardQueue(filled.database)
    with pytest.raises(ForwardError, match=r"^node CT1 has no port to send to; enrol it with a port$"):
        queue.enqueue("CT1", uid_of(files.first[0]), requested_by="alice")
    enrol_node(filled, "WARD", 11112, host="10.1.0.0/24")
    with pytest.raises(
        ForwardError, match=r"^node WARD is enrolled with a network \(10.1.0.0/24\), not one address$"
    ):
        queue.enqueue("WARD", uid_of(files.first[0]), requested_by="alice")
    assert queue.jobs() == []


def test_a_study_in_the_trash_cannot_be_queued(filled: Context, files: TrashFiles) -> None:
    study = uid_of(files.first[0])
    with filled.database.write() as session:
        session.execute(update(Study).where(Study.study_uid == study).values(deleted_at=datetime.now(UTC)))
    with pytest.raises(ForwardError, match=f"no study {study}"):
        ForwardQueue(filled.database).enqueue("TELERAD", study, requested_by="alice")
    jobs = ForwardQueue(filled.database).enqueue_patient("TELERAD", "PID-T-1", requested_by="alice")
    assert [job.study_uid for job in jobs] == [uid_of(files.second[0])]


def test_routes_queue_the_studies_they_match_once_each(filled: Context, files: TrashFiles) -> None:
    routes = (
        Route(name="ct", modality="CT", to="TELERAD"),
        Route(name="from-ct2", from_ae="CT2", to="TELERAD"),
        Route(name="mr", modality="MR", to="TELERAD"),
    )
    forwarding = Forwarding(filled.database, filled.audit, routes)
    studies = [uid_of(files.first[0]), uid_of(files.first[1]), uid_of(files.old[0])]
    jobs = forwarding.delivered("CT1", studies, "192.0.2.9")
    assert sorted((job.study_uid, job.requested_by) for job in jobs) == sorted(
        [(uid_of(files.first[0]), "route:ct"), (uid_of(files.old[0]), "route:ct")]
    )
    assert forwarding.delivered("TELERAD", studies) == []  # never back to where they came from


def test_a_route_to_a_node_that_is_not_enrolled_or_has_no_port_is_reported(filled: Context) -> None:
    routes = (Route(name="a", to="TELERAD"), Route(name="b", to="NOBODY"), Route(name="c", to="CT1"))
    assert route_problems(filled.database, routes) == [
        "route b: destination NOBODY is not an enrolled node",
        "route c: destination CT1 has no port to send to",
    ]
    with pytest.raises(RouteCheckError, match=r"^pacs.toml: route b: destination NOBODY .* \(and 1 more\)"):
        check_routes(filled.database, routes)
    check_routes(filled.database, routes[:1])


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "x"', "to '' must be 1 to 16"),
        ('name = "x"\nto = "A"\nfrom = "B"', "unknown key from"),
        ('name = "bad name"\nto = "A"', "name 'bad name' must be"),
        ('name = "x"\nto = "A"\nfrom_ae = "A"', "may not send studies back"),
        ('name = "x"\nto = "A"\nmodality = "C T"', "is not a modality"),
    ],
)
def test_an_invalid_route_table_is_a_one_line_error_naming_it(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(RouteError, match=message) as raised:
        parse_settings(f"[[route]]\n{table}\n", tmp_path, {}, origin="pacs.toml")
    assert str(raised.value).startswith("pacs.toml: [[route]] #1")
    assert "\n" not in str(raised.value)


def test_route_tables_are_read_into_the_settings(tmp_path: Path) -> None:
    text = (
        '[[route]]\nname = "ct"\nfrom_ae = "CT1"\nmodality = "ct"\nto = "TELE"\n'
        '[[route]]\nname = "all"\nto = "OFF"\n'
    )
    settings = parse_settings(text, tmp_path, {}, origin="pacs.toml")
    assert settings.routes == (
        Route(name="ct", to="TELE", from_ae="CT1", modality="CT"),
        Route(name="all", to="OFF"),
    )
    assert [route.describe() for route in settings.routes] == [
        "from CT1, modality CT -> TELE",
        "every study received -> OFF",
    ]
    with pytest.raises(RouteError, match="two \\[\\[route\\]\\] tables are named 'ct'"):
        parse_settings(text.replace('"all"', '"ct"'), tmp_path, {}, origin="pacs.toml")


def test_selfcheck_reports_a_route_that_cannot_send_and_notes_failed_jobs(
    filled: Context, files: TrashFiles
) -> None:
    routes = (Route(name="lost", to="NOBODY"), Route(name="fine", to="TELERAD"))
    routed = replace(filled, settings=replace(filled.settings, routes=routes))
    assert list(check_forwarding(routed, datetime.now(UTC))) == [
        Finding(
            "forwarding",
            "route lost: destination NOBODY is not an enrolled node: pacs serve refuses to start, "
            "and no study is sent by it",
            "enrol the node with its port (pacs modality add ... --port N) or fix the [[route]] in pacs.toml",
        )
    ]
    queue = ForwardQueue(filled.database)
    queue.cancel(queue.enqueue("TELERAD", uid_of(files.first[0]), requested_by="alice").id, by="alice")
    (note,) = check_forwarding(filled, datetime.now(UTC))
    assert isinstance(note, Note) and note.message.startswith("1 forwarding job(s) failed")
    assert "forwarding" in selfcheck.CHECKS
