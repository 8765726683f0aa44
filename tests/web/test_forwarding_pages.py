"""The forwarding pages on both index backends: the queue (admin), the forward form (admin and physician).

A study forwarded from the form is a committed job on the queue page (and in ``pacs study queue``),
audited with the user and the address; retry and cancel change the job; the rules of pacs.toml are
shown read-only; a node without a port, a study in the trash and a missing role are refused.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from pacs.core.audit_vocabulary import EventID
from pacs.core.config_routes import Route
from pacs.core.context import Context
from pacs.ops.forward_queue import FAILED, PENDING, ForwardQueue
from storage.models import Study
from tests.ops.forward_helpers import enrol_node
from tests.web.dicomweb_helpers import Study as StoredStudy
from tests.web.dicomweb_helpers import store_study
from tests.web.web_helpers import ADDRESS, ADMIN, Browser, Web, make_web, messages

CARE = frozenset({"admin", "physician"})
ROUTES = (Route(name="ct-out", from_ae="CT1", modality="CT", to="TELERAD"), Route(name="lost", to="NOBODY"))


@pytest.fixture
def web(pacs: Context) -> Web:
    """The web viewer with two rules, TELERAD (with a port) and CT1 (without) enrolled."""
    enrol_node(pacs, "TELERAD", 11112)
    enrol_node(pacs, "CT1", None)
    return make_web(pacs, routes=ROUTES)


@pytest.fixture
def carer(web: Web) -> Browser:
    return web.logged_in(web.user("carer", CARE))


@pytest.fixture
def ct(web: Web, ct_dir: Path) -> StoredStudy:
    return store_study(web.pacs, sorted(ct_dir.glob("*.dcm")))


def _job_ids(page: str, state: str) -> list[int]:
    table = page.split(f'id="{state}-jobs"', 1)[1].split("</table>", 1)[0]
    return [int(n) for n in re.findall(r'<tr data-job="(\d+)">', table)]


def test_a_study_forwarded_from_the_form_is_a_job_on_the_queue_page_and_audited(
    web: Web, carer: Browser, ct: StoredStudy
) -> None:
    form = carer.get(f"/admin/studies/{ct.uid}/forward")
    assert form.status_code == 200
    assert "QUIXOTE^DULCINEA" in form.text and 'value="TELERAD"' in form.text
    assert 'value="CT1"' not in form.text  # no port: nothing can be sent to it
    assert f'value="{ct.series_uid}"' in form.text

    sent = carer.post(f"/admin/studies/{ct.uid}/forward", {"to": "TELERAD", "series": ct.series_uid})
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/admin/forwarding")
    (job,) = ForwardQueue(web.pacs.database).jobs(PENDING)
    assert (job.destination, job.study_uid, job.series_uid, job.requested_by) == (
        "TELERAD", ct.uid, ct.series_uid, "carer",
    )  # fmt: skip
    page = carer.get("/admin/forwarding")
    assert _job_ids(page.text, "pending") == [job.id]
    assert f"queued for TELERAD as job {job.id}" in messages(page.text)[0]
    assert page.headers["Cache-Control"] == "no-store"
    records = [
        (r.user_id, r.source, json.loads(r.details).get("stage"))
        for r in web.pacs.audit.records()
        if r.event_id == EventID.INSTANCES_TRANSFERRED.value and r.study_uid == ct.uid
    ]
    assert records == [("carer", ADDRESS, "queued")]


def test_the_queue_page_shows_the_rules_read_only_and_flags_a_route_that_cannot_send(
    carer: Browser,
) -> None:
    page = carer.get("/admin/forwarding").text
    routes = page.split('id="routes"', 1)[1].split("</table>", 1)[0]
    assert re.findall(r'<tr data-route="([^"]+)">', routes) == ["ct-out", "lost"]
    assert "<td>CT1</td>" in routes and "<td>CT</td>" in routes
    assert "route lost: destination NOBODY is not an enrolled node" in page
    assert "pacs.toml" in page and "<form" not in routes


def test_cancel_and_retry_on_the_queue_page_change_the_job(web: Web, carer: Browser, ct: StoredStudy) -> None:
    queue = ForwardQueue(web.pacs.database)
    job = queue.enqueue("TELERAD", ct.uid, requested_by="carer")
    carer.post(f"/admin/forwarding/{job.id}/cancel", {}, form_page="/admin/forwarding")
    assert queue.get(job.id).state == FAILED
    page = carer.get("/admin/forwarding").text
    assert _job_ids(page, "failed") == [job.id] and "cancelled by carer" in page
    carer.post(f"/admin/forwarding/{job.id}/retry", {}, form_page="/admin/forwarding")
    assert (queue.get(job.id).state, queue.get(job.id).attempts) == (PENDING, 0)
    again = carer.post(f"/admin/forwarding/{job.id}/cancel", {}, form_page="/admin/forwarding")
    assert again.status_code == 302
    refused = carer.post(f"/admin/forwarding/{job.id}/cancel", {}, form_page="/admin/forwarding")
    assert refused.status_code == 302
    assert (
        f"forwarding job {job.id} is failed, not pending" in messages(carer.get("/admin/forwarding").text)[0]
    )


def test_forwarding_to_a_node_without_a_port_or_a_study_in_the_trash_is_refused(
    web: Web, carer: Browser, ct: StoredStudy
) -> None:
    refused = carer.post(f"/admin/studies/{ct.uid}/forward", {"to": "CT1", "series": ""})
    assert refused.status_code == 400
    assert "node CT1 has no port to send to" in messages(refused.text)[0]
    assert ForwardQueue(web.pacs.database).jobs() == []
    with web.pacs.database.write() as session:
        session.execute(update(Study).where(Study.study_uid == ct.uid).values(deleted_at=datetime.now(UTC)))
    assert carer.get(f"/admin/studies/{ct.uid}/forward").status_code == 404


def test_the_queue_needs_the_admin_role_and_the_form_needs_admin_and_physician(
    web: Web, doc: Browser, ct: StoredStudy
) -> None:
    admin = web.logged_in(web.user("admin", ADMIN), address="192.0.2.11")
    assert admin.get("/admin/forwarding").status_code == 200
    assert admin.get(f"/admin/studies/{ct.uid}/forward").status_code == 403
    assert doc.get(f"/admin/studies/{ct.uid}/forward").status_code == 403
    assert doc.get("/admin/forwarding").status_code == 403
