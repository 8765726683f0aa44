"""What is alerted, once: Security Alerts per source and window, lockouts, certificates, disk, forwards.

Every test queues into the real alert queue of a real archive (SQLite and PostgreSQL) and reads
the queue back. Time is moved by passing `now`; records are written by the audit builders.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from pacs.core import access_events, events, pki
from pacs.core.context import CA_CERT, CA_KEY, Context
from pacs.core.nodes import NodeRegistry
from pacs.ops.alert_conditions import certificate_alerts, disk_alert, forward_alerts
from pacs.ops.alert_state import AlertState
from pacs.ops.alert_watch import AlertWatch
from pacs.ops.alerts import AlertQueue, QueuedAlert
from pacs.ops.forward_queue import Attempt, ForwardQueue
from storage.models import Study
from tests.ops.forward_helpers import enrol_node

WINDOW = 15


def _watch(pacs: Context) -> AlertWatch:
    """A watch over `pacs` whose cursors stand at the trail's end (its first scan sets them)."""
    watch = AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=WINDOW)
    watch.scan()
    return watch


def _after_window() -> datetime:
    """A moment at which the window holding the present has closed."""
    return datetime.now(UTC) + timedelta(minutes=WINDOW)


def _alerts(pacs: Context, kind: str) -> list[QueuedAlert]:
    return [a for a in AlertQueue(pacs.database).alerts() if a.kind == kind]


def _reject(pacs: Context, source: str, count: int) -> None:
    for n in range(count):
        pacs.audit.append(
            access_events.connection_failed(
                source, "association rejected: calling AE title not enrolled", {"n": n}, by="INTRUDER"
            )
        )


def test_twenty_rejected_associations_from_one_address_make_one_alert_with_their_count(pacs: Context) -> None:
    watch = _watch(pacs)
    _reject(pacs, "10.9.8.7", 20)
    assert watch.scan(_after_window()) == 1
    (alert,) = _alerts(pacs, "security-alert")
    assert alert.subject == "20 refused requests from 10.9.8.7"
    assert "20 x association rejected: calling AE title not enrolled" in alert.text
    assert "INTRUDER" in alert.text


def test_refusals_from_two_addresses_make_two_alerts(pacs: Context) -> None:
    watch = _watch(pacs)
    _reject(pacs, "10.9.8.7", 3)
    _reject(pacs, "10.9.8.6", 2)
    pacs.audit.append(events.restricted_function_refused("nurse", "admin page refused", source="10.9.8.6"))
    watch.scan(_after_window())
    subjects = sorted(a.subject for a in _alerts(pacs, "security-alert"))
    assert subjects == ["3 refused requests from 10.9.8.6", "3 refused requests from 10.9.8.7"]


def test_an_open_window_is_not_alerted_until_it_closes(pacs: Context) -> None:
    watch = _watch(pacs)
    _reject(pacs, "10.9.8.7", 4)
    assert watch.scan() == 0
    assert _alerts(pacs, "security-alert") == []
    assert watch.scan(_after_window()) == 1


def test_accepted_associations_are_not_security_alerts(pacs: Context) -> None:
    watch = _watch(pacs)
    pacs.audit.append(access_events.association_accepted("CT1", source="10.1.1.1", details={}))
    watch.scan(_after_window())
    assert _alerts(pacs, "security-alert") == []


def test_a_lockout_is_alerted_at_once_and_not_counted_as_a_refusal(pacs: Context) -> None:
    watch = _watch(pacs)
    pacs.audit.append(events.account_locked("alice", source="10.2.2.2", failures=5, lifts_after_minutes=15))
    assert watch.scan() == 1
    (alert,) = _alerts(pacs, "lockout")
    assert alert.subject == "account alice locked"
    assert "10.2.2.2" in alert.text and "5 failed logins" in alert.text
    watch.scan(_after_window())
    assert _alerts(pacs, "security-alert") == []
    assert len(_alerts(pacs, "lockout")) == 1


def test_a_new_watch_over_the_same_archive_loses_and_repeats_nothing(pacs: Context) -> None:
    first = _watch(pacs)
    _reject(pacs, "10.9.8.7", 20)
    first.scan()
    pacs.audit.append(events.account_locked("bob", source="10.9.8.7", failures=5, lifts_after_minutes=15))
    second = AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=WINDOW)
    assert second.scan() == 1
    third = AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=WINDOW)
    assert third.scan(_after_window()) == 1
    fourth = AlertWatch(pacs, AlertQueue(pacs.database), window_minutes=WINDOW)
    assert fourth.scan(_after_window()) == 0
    assert [a.subject for a in _alerts(pacs, "security-alert")] == ["20 refused requests from 10.9.8.7"]
    assert [a.subject for a in _alerts(pacs, "lockout")] == ["account bob locked"]


def _short_lived_node(pacs: Context, ae_title: str, days: int) -> None:
    settings = pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    issued = pki.issue_client_cert(ca, ae_title, valid_days=days)
    NodeRegistry(pacs.database).add(ae_title, host="127.0.0.1", certificate=issued.cert, cert_issued=True)


def test_a_node_certificate_is_alerted_at_30_7_and_1_days_and_expired_once_each(pacs: Context) -> None:
    _short_lived_node(pacs, "SHORT", 40)
    queue, state = AlertQueue(pacs.database), AlertState(pacs.database)
    start = datetime.now(UTC)
    seen = []
    for day in (0, 5, 10.1, 11, 20, 32, 33.1, 34, 38, 39.5, 39.8, 41, 45):
        certificate_alerts(pacs, queue, state, start + timedelta(days=day))
        seen.append(len(_alerts(pacs, "certificate")))
    assert seen == [0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    subjects = [a.subject for a in reversed(_alerts(pacs, "certificate"))]
    assert subjects == [
        "the certificate of node SHORT expires within 30 days",
        "the certificate of node SHORT expires within 7 days",
        "the certificate of node SHORT expires within 1 days",
        "the certificate of node SHORT has expired",
    ]


def test_a_certificate_first_seen_near_its_end_gets_only_the_nearest_threshold(pacs: Context) -> None:
    _short_lived_node(pacs, "NEAR", 5)
    queue, state = AlertQueue(pacs.database), AlertState(pacs.database)
    assert certificate_alerts(pacs, queue, state, datetime.now(UTC)) == 1
    assert (
        certificate_alerts(pacs, AlertQueue(pacs.database), AlertState(pacs.database), datetime.now(UTC)) == 0
    )
    (alert,) = _alerts(pacs, "certificate")
    assert alert.subject == "the certificate of node NEAR expires within 7 days"


def _watermark(pacs: Context, megabytes: int) -> Context:
    storage = dataclasses.replace(pacs.settings.storage, min_free_mb=megabytes)
    return dataclasses.replace(pacs, settings=dataclasses.replace(pacs.settings, storage=storage))


def test_the_disk_below_the_watermark_is_alerted_once_and_its_recovery_once(pacs: Context) -> None:
    full, roomy = _watermark(pacs, 2**40), _watermark(pacs, 1)
    queue, state = AlertQueue(pacs.database), AlertState(pacs.database)
    assert disk_alert(roomy.settings, queue, state) is False
    assert disk_alert(full.settings, queue, state) is True
    assert disk_alert(full.settings, queue, state) is False
    assert disk_alert(roomy.settings, queue, state) is True
    assert disk_alert(roomy.settings, queue, state) is False
    assert disk_alert(full.settings, queue, state) is True
    subjects = [a.subject for a in reversed(_alerts(pacs, "disk"))]
    assert subjects == [
        "disk below the watermark: new objects are refused",
        "disk back above the watermark",
        "disk below the watermark: new objects are refused",
    ]
    assert "MiB free" in _alerts(pacs, "disk")[0].text


def _study_uid(pacs: Context) -> str:
    with pacs.database.read() as session:
        return str(session.scalars(select(Study.study_uid).limit(1)).one())


@pytest.fixture
def failed_job(pacs: Context, originals: dict[str, bytes]) -> int:
    """A forwarding job of the archive's CT study that failed for good."""
    enrol_node(pacs, "DEST", 11112)
    forwards = ForwardQueue(pacs.database)
    job = forwards.enqueue("DEST", _study_uid(pacs), requested_by="admin")
    claimed = forwards.claim()
    assert claimed is not None and claimed.id == job.id
    forwards.finish(claimed, Attempt(sent=0, failed=12, error="association refused by DEST", final=True))
    return job.id


def test_a_failed_forward_is_alerted_once(pacs: Context, failed_job: int) -> None:
    queue, state = AlertQueue(pacs.database), AlertState(pacs.database)
    assert forward_alerts(pacs.database, queue, state) == 1
    assert forward_alerts(pacs.database, AlertQueue(pacs.database), AlertState(pacs.database)) == 0
    (alert,) = _alerts(pacs, "forward")
    assert alert.subject == f"forwarding job {failed_job} to DEST failed"
    assert "association refused by DEST" in alert.text
    assert f"pacs study forward retry {failed_job}" in alert.text


def test_a_cancelled_forward_is_not_alerted(pacs: Context, originals: dict[str, bytes]) -> None:
    enrol_node(pacs, "DEST", 11112)
    forwards = ForwardQueue(pacs.database)
    job = forwards.enqueue("DEST", _study_uid(pacs), requested_by="admin")
    forwards.cancel(job.id, by="admin")
    assert forward_alerts(pacs.database, AlertQueue(pacs.database), AlertState(pacs.database)) == 0
