"""The audit log page as an office manager reads it: words for codes, one line per record, filters.

Events, actions and outcomes are named (the DCM codes stay in a tooltip), the details are
summed up in one line with the full JSON behind a ``<details>`` toggle, the filters (event,
user, patient, study, dates, failures) are applied by the server and paged, a bad date is
named, and every look is audited with the filters used. On both index backends.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from pacs.core.audit import Action, AuditEvent, EventID, EventType, Outcome
from tests.web.admin.admin_helpers import SCRIPT, _audit_rows
from tests.web.web_helpers import Browser, Web, details, messages

_ROW_TAG = re.compile(r'<tr data-seq="(\d+)" class="(failure|success)">(.*?)</tr>', re.S)
_EVENT_TITLE = re.compile(r'<td class="event" title="([^"]*)">')
_SUMMARY = re.compile(r"<summary>(.*?)</summary><pre>(.*?)</pre>", re.S)


def _append(web: Web, *events: AuditEvent) -> None:
    for event in events:
        web.pacs.audit.append(event)


def _seed_subjects(web: Web) -> None:
    """Records about two patients and their studies, by two users."""
    _append(
        web,
        AuditEvent(
            EventID.INSTANCES_ACCESSED, Action.READ, user_id="carol", patient_id="PID-1", study_uid="1.2.1"
        ),
        AuditEvent(EventID.EXPORT, Action.READ, user_id="dave", patient_id="PID-2", study_uid="1.2.2"),
        AuditEvent(
            EventID.USER_AUTHENTICATION,
            Action.EXECUTE,
            outcome=Outcome.SERIOUS_FAILURE,
            user_id="dave",
            event_type=EventType.LOGOUT,
        ),
        AuditEvent(EventID.QUERY, Action.EXECUTE, user_id="carol", patient_id="PID-1", study_uid="1.2.3"),
    )


def _shown(boss: Browser, query: str) -> list[tuple[str, str, str, str]]:
    """(event, user, patient/study text, outcome) of each record shown, the page's own view excluded."""
    rows = _audit_rows(boss.get(f"/admin/audit{query}").text)
    return [(row[2], row[5], " ".join(row[7].split()), row[4]) for row in rows if row[2] != "Audit Log Used"]


def test_events_actions_and_outcomes_are_named_in_words(web: Web, boss: Browser) -> None:
    for outcome, action in zip(
        Outcome, (Action.CREATE, Action.READ, Action.UPDATE, Action.DELETE), strict=True
    ):
        _append(web, AuditEvent(EventID.STUDY_DELETED, action, outcome=outcome, user_id=f"u{int(outcome)}"))
    _append(
        web,
        AuditEvent(
            EventID.USER_AUTHENTICATION,
            Action.EXECUTE,
            outcome=Outcome.MINOR_FAILURE,
            user_id="mallory",
            event_type=EventType.LOGIN,
        ),
    )
    page = boss.get("/admin/audit").text
    rows = _audit_rows(page)
    assert [(row[2], row[3], row[4], row[5]) for row in rows[:5]] == [
        ("User Authentication: Login", "Execute", "Minor failure", "mallory"),
        ("DICOM Study Deleted", "Delete", "Major failure", "u12"),
        ("DICOM Study Deleted", "Update", "Serious failure", "u8"),
        ("DICOM Study Deleted", "Read", "Minor failure", "u4"),
        ("DICOM Study Deleted", "Create", "Success", "u0"),
    ]
    assert _EVENT_TITLE.findall(page)[:2] == [
        "User Authentication: Login (110114 / 110122)",
        "DICOM Study Deleted (110105)",
    ]
    classes = [state for _, state, _ in _ROW_TAG.findall(page)[:5]]
    assert classes == ["failure", "failure", "failure", "failure", "success"]


def test_details_are_summed_up_in_one_line_with_the_json_behind_a_toggle(web: Web, boss: Browser) -> None:
    _append(
        web,
        AuditEvent(
            EventID.SECURITY_ALERT,
            Action.CREATE,
            user_id="boss",
            event_type=EventType.NETWORK_CONFIGURATION,
            details={
                "what": "node enrolled",
                "ae_title": "CT1",
                "permissions": ["find", "store"],
                "port": 104,
            },
        ),
    )
    page = boss.get("/admin/audit?user=boss&event=110128").text
    found = _SUMMARY.findall(page)
    assert len(found) == 1, page
    summary, json_text = (html.unescape(part) for part in found[0])
    assert summary == "node enrolled; ae title: CT1; permissions: find, store; port: 104"
    assert '"ae_title": "CT1"' in json_text and '"port": 104' in json_text
    assert "<script" not in page.split("</header>", 1)[1]


def test_a_long_summary_is_cut_to_one_line_and_the_json_keeps_it_all(web: Web, boss: Browser) -> None:
    long = "x" * 500
    _append(
        web, AuditEvent(EventID.QUERY, Action.EXECUTE, user_id="carol", details={"what": "q", "keys": long})
    )
    summary, json_text = (
        html.unescape(p) for p in _SUMMARY.findall(boss.get("/admin/audit?user=carol").text)[0]
    )
    assert len(summary) == 200 and summary.endswith("…")
    assert long in json_text


def test_filters_by_patient_study_user_and_event(web: Web, boss: Browser) -> None:
    _seed_subjects(web)
    assert _shown(boss, "?patient=PID-1") == [
        ("Query", "carol", "PID-1 1.2.3", "Success"),
        ("DICOM Instances Accessed", "carol", "PID-1 1.2.1", "Success"),
    ]
    assert _shown(boss, "?study=1.2.2") == [("Export", "dave", "PID-2 1.2.2", "Success")]
    assert _shown(boss, "?user=dave&event=110106") == [("Export", "dave", "PID-2 1.2.2", "Success")]
    # An event type (Logout) is a filter of its own too.
    assert _shown(boss, "?event=110123") == [("User Authentication: Logout", "dave", "", "Serious failure")]
    assert _shown(boss, "?user=dave&failures=1") == [
        ("User Authentication: Logout", "dave", "", "Serious failure")
    ]


def test_filters_by_date_range(web: Web, boss: Browser) -> None:
    _seed_subjects(web)
    today = datetime.now(UTC).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    assert len(_shown(boss, f"?patient=PID-1&since={today}&until={today}")) == 2
    assert len(_shown(boss, f"?patient=PID-1&since={yesterday}")) == 2
    assert _shown(boss, f"?patient=PID-1&until={yesterday}") == []
    assert _shown(boss, f"?patient=PID-1&since={tomorrow}") == []


def test_a_bad_date_or_event_is_named_and_that_filter_left_out(web: Web, boss: Browser) -> None:
    _seed_subjects(web)
    response = boss.get("/admin/audit?patient=PID-2&since=2024-13-45&event=999999")
    assert response.status_code == 200
    assert messages(response.text) == [
        "Event: '999999' is not an event this archive records; that filter was left out.",
        "From: '2024-13-45' is not a date (YYYY-MM-DD); that filter was left out.",
    ]
    assert _shown(boss, "?patient=PID-2&since=2024-13-45") == [("Export", "dave", "PID-2 1.2.2", "Success")]


def test_the_form_shows_the_filters_it_applied(web: Web, boss: Browser) -> None:
    page = boss.get(
        "/admin/audit?user=carol&patient=PID-1&study=1.2.1&event=110122&since=2026-01-02&failures=1"
    ).text
    for field, value in (
        ("user", "carol"),
        ("patient", "PID-1"),
        ("study", "1.2.1"),
        ("since", "2026-01-02"),
    ):
        assert re.search(rf'name="{field}"[^>]*value="{re.escape(value)}"', page), field
    assert '<option value="110122" selected>Login</option>' in page
    assert re.search(r'name="failures" value="1" checked', page)


def test_the_log_is_paged_fifty_records_a_page_newest_first(web: Web, boss: Browser) -> None:
    for n in range(120):
        _append(web, AuditEvent(EventID.QUERY, Action.EXECUTE, user_id="bulk", details={"what": f"q{n}"}))
    first = boss.get("/admin/audit?user=bulk")
    rows = _audit_rows(first.text)
    assert len(rows) == 50 and rows[0][8].startswith("q119{") and rows[-1][8].startswith("q70{")
    older = re.search(r'href="([^"]+)" id="older"', first.text)
    assert older is not None and "user=bulk" in html.unescape(older.group(1))
    third = _audit_rows(boss.get("/admin/audit?user=bulk&page=3").text)
    assert [row[8].split("{")[0] for row in third] == [f"q{n}" for n in range(19, -1, -1)]
    assert 'id="older"' not in boss.get("/admin/audit?user=bulk&page=3").text


def test_reading_the_log_is_audited_with_every_filter_used(web: Web, boss: Browser) -> None:
    boss.get(
        "/admin/audit?patient=PID-1&study=1.2.1&event=110122&since=2026-01-02&until=2026-02-03&failures=1"
    )
    views = web.audit(str(EventID.AUDIT_LOG_USED), user="boss")
    assert len(views) == 1
    assert details(views[0])["filters"] == {
        "event_type": "110122",
        "patient_id": "PID-1",
        "study_uid": "1.2.1",
        "since": "2026-01-02",
        "until": "2026-02-03",
        "failures_only": True,
    }


def test_patient_study_user_and_details_are_escaped_in_text_links_and_json(web: Web, boss: Browser) -> None:
    _append(
        web,
        AuditEvent(
            EventID.INSTANCES_ACCESSED,
            Action.READ,
            user_id=SCRIPT,
            patient_id=SCRIPT,
            study_uid='1.2"><img src=x>',
            details={"what": SCRIPT, SCRIPT: SCRIPT},
        ),
    )
    page = boss.get("/admin/audit").text
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'title="1.2&#34;&gt;&lt;img src=x&gt;"' in page
