"""``pacs selfcheck`` flags a web port that listens on every address and answers any client.

A fresh archive answers the loopback and private ranges only (the default of ``[web]
allowed_networks``), which is a note; the settings that open it to everyone are findings whose fix
names the setting. A proxy list that trusts every address is a finding too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.config import Settings
from pacs.core.context import initialise

CHECK = "web-exposure"


@pytest.fixture
def archive(tmp_path: Path) -> Settings:
    return initialise(tmp_path / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")


def _web_exposure(archive: Settings, capsys: pytest.CaptureFixture[str], **environ: str) -> tuple[list, list]:
    """The findings and notes of the web-exposure check with `environ` overriding settings."""
    main(["selfcheck", "--json", "--data", str(archive.data_dir)], environ=environ)
    report = json.loads(capsys.readouterr().out)
    findings = [f for f in report["findings"] if f["check"] == CHECK]
    return findings, [n["message"] for n in report["notes"] if n["check"] == CHECK]


def test_a_fresh_archive_answers_private_ranges_only_and_says_so(
    archive: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    findings, notes = _web_exposure(archive, capsys)
    assert findings == []
    assert len(notes) == 1 and "127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16" in notes[0]
    assert notes[0].endswith("only; others get 403")


@pytest.mark.parametrize("allowed", ["", "0.0.0.0/0", "10.8.0.0/24,::/0"])
def test_a_web_port_on_every_address_open_to_any_client_is_a_finding_naming_the_setting(
    archive: Settings, capsys: pytest.CaptureFixture[str], allowed: str
) -> None:
    findings, _ = _web_exposure(archive, capsys, PACS_WEB_ALLOWED_NETWORKS=allowed)
    assert len(findings) == 1
    assert "listens on every address (0.0.0.0:8443) and answers any client" in findings[0]["message"]
    assert findings[0]["fix"].startswith("set [web] allowed_networks in pacs.toml")


def test_a_restricted_web_port_is_no_finding(archive: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    findings, notes = _web_exposure(archive, capsys, PACS_WEB_ALLOWED_NETWORKS="10.8.0.0/24")
    assert (findings, notes) == ([], ["the web viewer answers 10.8.0.0/24 only; others get 403"])


def test_a_web_port_bound_to_one_address_open_to_any_client_is_a_note(
    archive: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"PACS_WEB_ALLOWED_NETWORKS": "", "PACS_WEB_BIND": "127.0.0.1"}
    findings, notes = _web_exposure(archive, capsys, **environ)
    assert (findings, notes) == ([], ["the web viewer answers any client that reaches 127.0.0.1:8443"])


def test_trusting_every_address_as_a_proxy_is_a_finding(
    archive: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    findings, _ = _web_exposure(archive, capsys, PACS_WEB_TRUSTED_PROXIES="0.0.0.0/0")
    assert len(findings) == 1 and "trusts every address" in findings[0]["message"]
    assert "[web] trusted_proxies" in findings[0]["fix"]


def test_a_listed_proxy_is_a_note(archive: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    findings, notes = _web_exposure(archive, capsys, PACS_WEB_TRUSTED_PROXIES="127.0.0.1")
    assert findings == []
    assert notes[-1] == "X-Forwarded-For names the client in requests from 127.0.0.1/32 only"


def test_a_bad_network_is_a_one_line_error_naming_the_key(
    archive: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["selfcheck", "--data", str(archive.data_dir)], environ={"PACS_WEB_ALLOWED_NETWORKS": "10.8.0.1/24"}
    )
    error = capsys.readouterr().err.strip()
    assert code != 0 and len(error.splitlines()) == 1
    assert "PACS_WEB_ALLOWED_NETWORKS: [web] allowed_networks" in error and "'10.8.0.1/24'" in error
