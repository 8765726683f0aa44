"""The web viewer's admin pages: enrolling and removing modalities, and their PHI grants.

Everything here touches the index (accounts, sessions, nodes, the audit chain), so every
test runs on both backends (the ``pacs`` fixture). Time is a fake clock (see
:mod:`tests.web.web_helpers`); the app gets the real admin backend, :class:`pacs.serve.webadmin.PacsAdmin`.
"""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.http import parse_options_header
from werkzeug.test import TestResponse

from pacs.core import pki
from pacs.core.audit import Action, Outcome
from pacs.core.nodes import NodeRegistry
from pacs.serve.webadmin import PacsAdmin
from storage.models import AuditRecord
from tests.web.admin.admin_helpers import (
    NETWORK_CONFIGURATION,
    RESTRICTED,
    SECURITY_ALERT,
    _bundle,
    _ca_certificate,
    _enrol,
)
from tests.web.web_helpers import (
    ADDRESS,
    ADMIN,
    PHYSICIAN,
    Browser,
    Web,
    details,
    is_redirect_to,
    messages,
)

# Modalities.


def test_enrolment_answers_a_certificate_issued_by_the_archive_ca(web: Web, boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"]))
    assert set(bundle) == {"client.crt", "client.key", "ca.crt"}
    ca = _ca_certificate(web.pacs)
    cert = x509.load_pem_x509_certificate(bundle["client.crt"])
    assert cert.issuer == ca.subject
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CT1"
    assert x509.load_pem_x509_certificate(bundle["ca.crt"]) == ca


def test_enrolment_private_key_matches_the_certificate(boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5"))
    key = serialization.load_pem_private_key(bundle["client.key"], password=None)
    cert = x509.load_pem_x509_certificate(bundle["client.crt"])
    assert key.public_key() == cert.public_key()


def test_enrolled_node_is_registered_with_its_host_port_and_permissions(web: Web) -> None:
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))  # find and move are PHI grants
    bundle = _bundle(
        _enrol(chief, ae_title="CT1", host="10.0.0.0/24", port="11112", allow=["store", "find", "move"])
    )
    nodes = NodeRegistry(web.pacs.database).all()
    assert [n.ae_title for n in nodes] == ["CT1"]
    node = nodes[0]
    assert node.permissions == frozenset({"store", "find", "move"})
    assert str(node.network) == "10.0.0.0/24" and node.port == 11112
    assert node.cert_issued and not node.plaintext
    assert node.fingerprint == pki.fingerprint(x509.load_pem_x509_certificate(bundle["client.crt"]))
    assert "CT1" in chief.get("/admin/modalities").text


def test_enrolled_node_private_key_is_kept_nowhere(web: Web, boss: Browser) -> None:
    bundle = _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5"))
    key = serialization.load_pem_private_key(bundle["client.key"], password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    settings = web.pacs.settings
    files = [p for root in {settings.data_dir, settings.key_dir} for p in root.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (bundle["client.key"], der, scalar):
            assert secret not in data, path
    node = NodeRegistry(web.pacs.database).get("CT1")
    assert node is not None and "PRIVATE KEY" not in node.cert_pem
    assert all("PRIVATE KEY" not in record.details for record in web.pacs.audit.records())


def test_enrolment_is_audited_naming_the_admin(web: Web, boss: Browser) -> None:
    _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"], port="11112"))
    records = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION)
    assert len(records) == 1
    record = records[0]
    assert record.user_id == "boss" and record.action == str(Action.CREATE)
    assert details(record)["ae_title"] == "CT1" and details(record)["port"] == 11112
    assert details(record)["permissions"] == ["store"]
    assert details(record)["host"] == "10.0.0.5/32"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ae_title": "CT1", "host": "10.0.0.6"}, "already enrolled"),
        ({"ae_title": "A" * 17, "host": "10.0.0.6"}, "AE title"),
        ({"ae_title": "CT2", "host": "10.0.0.0/33"}, "not an IP address or CIDR network"),
        ({"ae_title": "CT2", "host": "10.0.0.1/24"}, "not an IP address or CIDR network"),
        ({"ae_title": "CT2", "host": "10.0.0.6", "port": "eleven"}, "is not a number"),
    ],
    ids=["duplicate-ae", "ae-too-long", "cidr-prefix", "cidr-host-bits", "port-not-numeric"],
)
def test_bad_enrolment_is_refused_with_a_message_and_enrols_nothing(
    web: Web, boss: Browser, fields: dict[str, str], message: str
) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    response = _enrol(boss, **fields)
    assert is_redirect_to(response, "/admin/modalities")
    shown = messages(boss.get("/admin/modalities").text)
    assert len(shown) == 1 and shown[0].startswith("Not enrolled:") and message in shown[0], shown
    assert NodeRegistry(web.pacs.database).all() == before
    assert [r.user_id for r in web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION)] == ["setup"]


def test_removing_a_node_unregisters_it_and_is_audited(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    response = boss.post("/admin/modalities/remove", {"ae_title": "CT1"}, form_page="/admin/modalities")
    assert is_redirect_to(response, "/admin/modalities")
    assert NodeRegistry(web.pacs.database).get("CT1") is None
    removals = [r for r in web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION) if r.action == str(Action.DELETE)]
    assert [(r.user_id, details(r)["ae_title"]) for r in removals] == [("boss", "CT1")]


def test_a_node_whose_ae_title_holds_a_slash_can_be_removed(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT/ROOM1", "10.0.0.5", "store", None, user="setup")
    boss.post("/admin/modalities/remove", {"ae_title": "CT/ROOM1"}, form_page="/admin/modalities")
    assert NodeRegistry(web.pacs.database).get("CT/ROOM1") is None


def test_the_certificate_download_name_cannot_carry_header_syntax(web: Web, boss: Browser) -> None:
    form = {"ae_title": 'EV"IL;X', "host": "10.0.0.5", "allow": "store"}
    response = boss.post("/admin/modalities", form, form_page="/admin/modalities")
    assert response.mimetype == "application/zip"
    kind, parameters = parse_options_header(response.headers["Content-Disposition"])
    assert (kind, parameters) == ("attachment", {"filename": 'EV"IL;X-certificate.zip'})


# PHI grants: find, move and get let a node read every patient's data.


def _refusals(web: Web, user: str) -> list[AuditRecord]:
    return [r for r in web.audit(SECURITY_ALERT, RESTRICTED, user=user) if "PHI grant" in details(r)["what"]]


@pytest.mark.parametrize("right", ["find", "move", "get"])
def test_an_admin_who_is_not_a_physician_cannot_enrol_a_node_with_a_phi_grant(
    web: Web, boss: Browser, right: str
) -> None:
    response = _enrol(boss, ae_title="SPY", host="10.0.0.66", allow=["store", right])
    assert response.status_code == 403
    assert response.mimetype == "text/html" and b"PRIVATE KEY" not in response.data
    shown = messages(response.text)
    assert len(shown) == 1 and shown[0].startswith("Not enrolled:"), shown
    assert f"granting {right}" in shown[0] and "admin who is also a physician" in shown[0]
    assert NodeRegistry(web.pacs.database).all() == []
    assert web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION) == []
    (refusal,) = _refusals(web, "boss")
    assert refusal.outcome == int(Outcome.MINOR_FAILURE) and refusal.source == ADDRESS
    assert details(refusal) == {
        "what": "PHI grant refused",
        "ae_title": "SPY",
        "host": "10.0.0.66/32",
        "permissions": sorted({"store", right}),
        "phi_grant": [right],
        "roles": ["admin"],
    }


def test_an_admin_who_is_also_a_physician_may_enrol_a_node_with_a_phi_grant(web: Web) -> None:
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))
    bundle = _bundle(_enrol(chief, ae_title="WS1", host="10.0.0.8", allow=["store", "find", "get"]))
    node = NodeRegistry(web.pacs.database).get("WS1")
    assert node is not None and node.permissions == frozenset({"store", "find", "get"})
    assert node.fingerprint == pki.fingerprint(x509.load_pem_x509_certificate(bundle["client.crt"]))
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="chief")
    assert details(record)["phi_grant"] == ["find", "get"]
    assert details(record)["authority"] == "admin and physician (web)"
    assert _refusals(web, "chief") == []


def test_a_store_only_enrolment_is_no_phi_grant_and_any_admin_may_make_it(web: Web, boss: Browser) -> None:
    _bundle(_enrol(boss, ae_title="CT1", host="10.0.0.5", allow=["store"]))
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss")
    assert details(record)["permissions"] == ["store"] and "phi_grant" not in details(record)


def _change_rights(browser: Browser, ae_title: str, allow: list[str]) -> TestResponse:
    token = browser.token("/admin/modalities")
    form = {"ae_title": ae_title, "allow": allow, "csrf_token": token}
    return browser.client.post("/admin/modalities/rights", data=form)


def test_an_admin_who_is_not_a_physician_cannot_widen_a_node_to_a_phi_grant(web: Web, boss: Browser) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    response = _change_rights(boss, "CT1", ["store", "find"])
    assert response.status_code == 403
    shown = messages(response.text)
    assert len(shown) == 1 and shown[0].startswith("CT1 unchanged:") and "granting find" in shown[0]
    assert NodeRegistry(web.pacs.database).all() == before
    (refusal,) = _refusals(web, "boss")
    assert details(refusal)["ae_title"] == "CT1" and details(refusal)["phi_grant"] == ["find"]


def test_an_admin_who_is_also_a_physician_may_widen_a_node_to_a_phi_grant(web: Web) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    chief = web.logged_in(web.user("chief", ADMIN | PHYSICIAN))
    assert is_redirect_to(_change_rights(chief, "CT1", ["store", "move"]), "/admin/modalities")
    node = NodeRegistry(web.pacs.database).get("CT1")
    assert node is not None and node.permissions == frozenset({"store", "move"})
    (record,) = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="chief")
    assert record.action == str(Action.UPDATE)
    assert details(record)["before"] == ["store"] and details(record)["permissions"] == ["move", "store"]
    assert details(record)["phi_grant"] == ["move"]


def test_any_admin_may_narrow_a_node_and_take_its_phi_grant_away(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("WS1", "10.0.0.8", "store,find,get", None, user="chief", roles=ADMIN | PHYSICIAN)
    assert is_redirect_to(_change_rights(boss, "WS1", ["store", "find"]), "/admin/modalities")
    assert is_redirect_to(_change_rights(boss, "WS1", ["store"]), "/admin/modalities")
    node = NodeRegistry(web.pacs.database).get("WS1")
    assert node is not None and node.permissions == frozenset({"store"})
    assert _refusals(web, "boss") == []
    changes = web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss")
    assert [details(r)["permissions"] for r in changes] == [["find", "store"], ["store"]]


@pytest.mark.parametrize(
    ("ae_title", "allow", "message"),
    [
        ("CT9", ["store"], "CT9 unchanged: no node with AE title 'CT9' is enrolled"),
        ("CT1", [], "CT1 unchanged: tick at least one right (Remove takes every right away)"),
    ],
    ids=["unknown-node", "no-rights"],
)
def test_a_change_of_rights_that_cannot_be_made_is_refused_with_a_message(
    web: Web, boss: Browser, ae_title: str, allow: list[str], message: str
) -> None:
    PacsAdmin(web.pacs).enrol("CT1", "10.0.0.5", "store", None, user="setup")
    before = NodeRegistry(web.pacs.database).all()
    assert is_redirect_to(_change_rights(boss, ae_title, allow), "/admin/modalities")
    assert messages(boss.get("/admin/modalities").text) == [message]
    assert NodeRegistry(web.pacs.database).all() == before
    assert web.audit(SECURITY_ALERT, NETWORK_CONFIGURATION, user="boss") == []


def test_the_modalities_page_marks_phi_grants(web: Web, boss: Browser) -> None:
    admin = PacsAdmin(web.pacs)
    admin.enrol("CT1", "10.0.0.5", "store", None, user="setup")
    admin.enrol("WS1", "10.0.0.8", "store,find", None, user="setup", roles=ADMIN | PHYSICIAN)
    page = boss.get("/admin/modalities").text
    marked = dict(re.findall(r'<tr data-ae="([^"]+)" class="(phi|plain)">', page))
    assert marked == {"CT1": "plain", "WS1": "phi"}
