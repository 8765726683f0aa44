"""One policy for an audit record that cannot be written: the action it records does not go on.

The audit table is made unwritable for real (a trigger that aborts every insert), not mocked:
the web answers 503 with a message and grants nothing, DICOM answers with a status,
the command line stops with a one-line error. Protective actions (logging out) still happen.
"""

from __future__ import annotations

import io
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage
from sqlalchemy import text

from pacs.cli import main
from pacs.core.config import load_settings
from pacs.core.context import Context, open_pacs
from tests.conftest import NodeFiles, RunningDicom, running_dicom
from tests.web.web_helpers import ADMIN, STEP, is_redirect_to, make_web, sqlite_pacs, store

UNAVAILABLE = "The audit trail cannot be written"
OUT_OF_RESOURCES = 0xA700


@contextmanager
def unwritable_audit(pacs: Context) -> Iterator[None]:
    """While inside, every insert into the audit table fails in the database itself."""
    with pacs.database.write() as session:
        session.execute(
            text(
                "CREATE TRIGGER audit_unwritable BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'the audit table is read-only'); END"
            )
        )
    try:
        yield
    finally:
        with pacs.database.write() as session:
            session.execute(text("DROP TRIGGER audit_unwritable"))


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Context]:
    yield from sqlite_pacs(tmp_path)


# -- web -------------------------------------------------------------------------------------------


def test_a_login_whose_record_cannot_be_written_does_not_log_in(archive: Context) -> None:
    web = make_web(archive)
    user = web.user("doc")
    browser = web.browser()
    assert is_redirect_to(browser.enter_password("doc", user.password), "/login/totp")
    web.clock.advance(STEP)
    assert user.totp is not None
    with unwritable_audit(archive):
        response = browser.enter_code(user.totp.at(web.clock()))
    assert response.status_code == 503
    assert is_redirect_to(browser.get("/"), "/login")
    assert UNAVAILABLE in response.text


def test_a_study_whose_viewing_cannot_be_recorded_is_not_shown(archive: Context, ct_dir: Path) -> None:
    store(archive, sorted(ct_dir.glob("*.dcm")))
    web = make_web(archive)
    browser = web.logged_in(web.user("doc"))
    study_uid = str(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0]).StudyInstanceUID)
    with unwritable_audit(archive):
        response = browser.get(f"/studies/{study_uid}")
    assert response.status_code == 503
    assert UNAVAILABLE in response.text
    assert study_uid not in response.text


def test_a_user_whose_creation_cannot_be_recorded_gets_no_password_shown(archive: Context) -> None:
    web = make_web(archive)
    admin = web.logged_in(web.user("chief", ADMIN))
    with unwritable_audit(archive):
        response = admin.post("/admin/users", {"name": "newdoc", "roles": "physician"})
    assert response.status_code == 503
    assert UNAVAILABLE in response.text
    assert "one-time password" not in response.text.lower()


def test_a_lockout_lifted_unrecorded_is_answered_503_with_the_reason(archive: Context) -> None:
    web = make_web(archive)
    admin = web.logged_in(web.user("chief", ADMIN))
    web.user("doc")
    for attempt in range(20):
        web.accounts.check_password("doc", "a wrong guess", f"198.51.100.{attempt + 1}")
    account = web.accounts.get("doc")
    assert account is not None and account.locked
    with unwritable_audit(archive):
        response = admin.post("/admin/users/doc/lift-lockout", {}, form_page="/admin/users")
    assert response.status_code == 503
    assert UNAVAILABLE in response.text


def test_logging_out_ends_the_session_even_when_it_cannot_be_recorded(archive: Context) -> None:
    web = make_web(archive)
    browser = web.logged_in(web.user("doc"))
    token = browser.cookie
    assert token is not None
    with unwritable_audit(archive):
        response = browser.log_out()
    assert is_redirect_to(response, "/login")
    assert not web.session_exists(token)
    assert is_redirect_to(browser.get("/"), "/login")


# -- DICOM -----------------------------------------------------------------------------------------


def _context(node: NodeFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(node.ca)
    context.load_cert_chain(node.cert, node.key)
    return context


@pytest.fixture
def dicom(tmp_path: Path) -> Iterator[RunningDicom]:
    with running_dicom(tmp_path) as running:
        yield running


def _associate(dicom: RunningDicom, node: NodeFiles) -> Association:
    scu = AE(ae_title=node.ae_title)
    scu.add_requested_context(CTImageStorage)
    return scu.associate("127.0.0.1", dicom.port, ae_title="PACS", tls_args=(_context(node), None))


def test_no_object_of_a_study_is_acknowledged_before_its_record_is_written(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    node = dicom.enrol("CT1")
    assoc = _associate(dicom, node)
    assert assoc.is_established
    try:
        with unwritable_audit(dicom.pacs):
            status = assoc.send_c_store(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0]))
    finally:
        assoc.release()
    assert status.Status == OUT_OF_RESOURCES
    assert "audit trail" in str(status.get("ErrorComment", ""))


def test_a_new_version_whose_record_cannot_be_written_is_not_acknowledged(
    dicom: RunningDicom, ct_dir: Path
) -> None:
    node = dicom.enrol("CT1")
    first, second = sorted(ct_dir.glob("*.dcm"))[:2]
    changed = pydicom.dcmread(first)
    changed.SeriesDescription = "edited after it was sent"
    assoc = _associate(dicom, node)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(pydicom.dcmread(first)).Status == 0x0000
        assert assoc.send_c_store(pydicom.dcmread(second)).Status == 0x0000
        with unwritable_audit(dicom.pacs):
            status = assoc.send_c_store(changed)
    finally:
        assoc.release()
    assert status.Status == OUT_OF_RESOURCES
    assert "audit trail" in str(status.get("ErrorComment", ""))


# -- command line ----------------------------------------------------------------------------------


def test_a_command_whose_record_cannot_be_written_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "pacs"
    assert main(["init", "--data", str(data)], environ={}) == 0
    capsys.readouterr()
    pacs = open_pacs(load_settings(data, {}))
    try:
        with unwritable_audit(pacs):
            monkeypatch.setattr(sys, "stdin", io.StringIO("violet kestrel under the quarry\n"))
            code = main(
                ["user", "add", "doc", "--role", "physician", "--password-stdin", "--data", str(data)],
                environ={},
            )
    finally:
        pacs.close()
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().splitlines() == [err.strip()]
    assert "audit trail cannot be written" in err
