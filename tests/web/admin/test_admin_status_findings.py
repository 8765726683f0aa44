"""The Status page shows exactly what ``pacs selfcheck`` finds, each finding with its fix.

"All is well" only when selfcheck has no finding (a fresh SQLCipher archive); a real finding
(a plaintext node enrolled, a config file others may read, PostgreSQL's clear-text index) is on
the page and in ``pacs selfcheck --json`` alike. Looking is audited as a selfcheck run.
"""

from __future__ import annotations

import html
import json
import re

import pytest

from pacs.cli import main
from pacs.core import pki
from pacs.core.audit import EventID, EventType
from pacs.core.context import CA_CERT, CA_KEY, CONFIG_NAME
from pacs.core.nodes import NodeRegistry
from pacs.ops import selfcheck
from tests.web.web_helpers import Browser, Web, details

_FINDING = re.compile(
    r'<li data-check="([^"]*)">\s*<span class="check">[^<]*</span>\s*<p class="message">(.*?)</p>\s*'
    r"<p class=\"fix\"><strong>Fix:</strong> <span>(.*?)</span></p>",
    re.S,
)
_VERDICT = re.compile(r'<p id="verdict" class="([^"]*)">(.*?)</p>', re.S)


def _page_findings(page: str) -> list[tuple[str, str, str]]:
    return [tuple(html.unescape(part) for part in found) for found in _FINDING.findall(page)]  # type: ignore[misc]


def _verdict(page: str) -> tuple[str, str]:
    found = _VERDICT.search(page)
    assert found, "no verdict on the status page"
    return found.group(1), " ".join(re.sub(r"<[^>]+>", "", found.group(2)).split())


def _cli_findings(web: Web, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, str]]:
    """The findings of ``pacs selfcheck --json`` on the same archive."""
    capsys.readouterr()
    main(["selfcheck", "--json", "--data", str(web.pacs.settings.data_dir)], environ={})
    report = json.loads(capsys.readouterr().out)
    return [(f["check"], f["message"], f["fix"]) for f in report["findings"]]


def _enrol_plaintext(web: Web, ae_title: str) -> None:
    settings = web.pacs.settings
    ca = pki.Issued(
        key=pki.load_private_key(settings.key_dir / CA_KEY),
        cert=pki.load_certificate(settings.tls_dir / CA_CERT),
    )
    NodeRegistry(web.pacs.database).add(
        ae_title,
        host="10.0.0.7",
        certificate=pki.issue_client_cert(ca, "LEGACY").cert,
        cert_issued=True,
        plaintext=True,
    )


def test_all_is_well_only_when_selfcheck_finds_nothing(web: Web, boss: Browser) -> None:
    page = boss.get("/admin/status").text
    expected = [(f.check, f.message, f.fix) for f in selfcheck.run(web.pacs).findings]
    assert _page_findings(page) == expected
    if web.pacs.database.is_sqlite:
        assert expected == []
        checks = len(selfcheck.CHECKS)
        assert _verdict(page) == (
            "all-well",
            f"All is well: pacs selfcheck finds nothing to fix ({checks} checks).",
        )
    else:
        assert [check for check, _, _ in expected] == ["index-encryption"]
        assert _verdict(page)[0] == "bad" and "All is well" not in page


def test_a_plaintext_node_is_the_same_finding_on_the_page_and_in_selfcheck(
    web: Web, boss: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    _enrol_plaintext(web, "LEGACY")
    page = boss.get("/admin/status").text
    shown = _page_findings(page)
    assert shown == _cli_findings(web, capsys)
    plaintext = [finding for finding in shown if finding[0] == "plaintext-dicom"]
    assert len(plaintext) == 1
    assert "node LEGACY at 10.0.0.7/32 may send UNENCRYPTED DICOM" in plaintext[0][1]
    assert plaintext[0][2].startswith("give it TLS")
    assert _verdict(page)[0] == "bad" and "All is well" not in page


def test_a_config_file_others_may_read_is_a_finding_with_its_fix(
    web: Web, boss: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    config = web.pacs.settings.data_dir / CONFIG_NAME
    config.chmod(0o644)
    shown = _page_findings(boss.get("/admin/status").text)
    assert shown == _cli_findings(web, capsys)
    assert any(check == "permissions" and CONFIG_NAME in message for check, message, _ in shown), shown
    config.chmod(0o600)
    assert not any(check == "permissions" for check, _, _ in _page_findings(boss.get("/admin/status").text))


def test_finding_texts_are_escaped(web: Web, boss: Browser) -> None:
    _enrol_plaintext(web, "<b>X&Y")
    page = boss.get("/admin/status").text
    assert "<b>X" not in page and "&lt;b&gt;X&amp;Y" in page
    assert any("<b>X&Y" in message for _, message, _ in _page_findings(page))


def test_looking_at_the_status_is_audited_as_a_selfcheck_run(web: Web, boss: Browser) -> None:
    _enrol_plaintext(web, "LEGACY")
    boss.get("/admin/status")
    runs = web.audit(str(EventID.APPLICATION_ACTIVITY), str(EventType.SECURITY_CONFIGURATION), user="boss")
    assert len(runs) == 1
    assert details(runs[0])["what"] == "selfcheck"
    assert any("LEGACY" in finding for finding in details(runs[0])["findings"])
