"""The shipped deployment files: the hardened systemd unit, checked by systemd's own tools."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, report_figure

UNIT = REPO / "deploy" / "pacs.service"
CHECK_UNIT = REPO / "deploy" / "pacs-selfcheck.service"
CHECK_TIMER = REPO / "deploy" / "pacs-selfcheck.timer"
# The unit names where install.sh puts the code; it is not installed on a test machine.
NOT_INSTALLED_HERE = "Command /opt/pacs/venv/bin/pacs is not executable"


def _service_section(unit: Path = UNIT, section: str = "Service") -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return parser[section]


def test_systemd_unit_is_rated_2_or_lower_by_systemd_analyze_security(pytestconfig: pytest.Config) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for pacs\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    report_figure(pytestconfig, "systemd-analyze security --offline=true pacs.service", match.group(1))
    assert float(match.group(1)) <= 2.0


def test_systemd_unit_verifies_clean() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--no-pager", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line for line in result.stderr.splitlines() if line.strip() and NOT_INSTALLED_HERE not in line
    ]
    assert complaints == []


def test_systemd_unit_runs_unprivileged_restarts_on_failure_and_writes_only_the_archive() -> None:
    service = _service_section()
    assert service["User"] == "pacs"
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/pacs"
    assert service["CapabilityBoundingSet"] == ""
    assert service["NoNewPrivileges"] == "yes"
    assert service["UMask"] == "0077"
    assert service["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]


def test_daily_selfcheck_unit_is_rated_2_or_lower_by_systemd_analyze_security() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(CHECK_UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for pacs-selfcheck\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_daily_selfcheck_timer_and_unit_verify_clean() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", "--no-pager", str(CHECK_UNIT), str(CHECK_TIMER)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line for line in result.stderr.splitlines() if line.strip() and NOT_INSTALLED_HERE not in line
    ]
    assert complaints == []


def test_daily_selfcheck_runs_once_a_day_as_pacs_in_the_service_sandbox_and_skips_a_day_already_checked() -> (
    None
):
    check, service = _service_section(CHECK_UNIT), _service_section()
    assert check["Type"] == "oneshot"
    assert check["ExecStart"].split() == [
        "/opt/pacs/venv/bin/pacs",
        "daily-check",
        "--data",
        "/var/lib/pacs",
        "--skip-if-ran-within",
        "12",
    ]
    sandbox = set(service) - {"Type", "ExecStart", "KillMode", "TimeoutStopSec", "Restart", "RestartSec"}
    assert {key: check[key] for key in sandbox} == {key: service[key] for key in sandbox}
    timer = _service_section(CHECK_TIMER, "Timer")
    assert timer["OnCalendar"] == "daily"
    assert timer["Persistent"] == "true"
    assert timer["Unit"] == "pacs-selfcheck.service"
    assert _service_section(CHECK_TIMER, "Install")["WantedBy"] == "timers.target"
