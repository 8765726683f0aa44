"""``pacs selfcheck --report OUT``: the assessment report as HTML or PDF, on each index backend.

A pacs.toml made readable by others is a finding: the report names it with selfcheck's fix,
the command exits 1 as selfcheck does, and the report is written 0600 and kept with its hash.
On PostgreSQL the report also states the index's known limitation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.context import CONFIG_NAME
from pacs.ops.assessment_history import ReportHistory


def _findings(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    capsys.readouterr()
    main(["selfcheck", "--json", "--data", str(data_dir)], environ={})
    return json.loads(capsys.readouterr().out)["findings"]


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_a_config_file_others_may_read_is_named_in_the_report_with_its_fix(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (data_dir / CONFIG_NAME).chmod(0o644)
    expected = _findings(data_dir, capsys)
    assert any(f["check"] == "permissions" and CONFIG_NAME in f["message"] for f in expected)
    out = tmp_path / "assessment.html"
    assert main(["selfcheck", "--data", str(data_dir), "--report", str(out)], environ={}) == 1
    printed = capsys.readouterr().out
    (entry,) = ReportHistory(data_dir).entries()
    assert printed.strip() == (
        f"assessment report written to {out}: {len(expected)} findings (sha256 of the HTML {entry.sha256})"
    )
    html = out.read_text()
    assert out.stat().st_mode & 0o777 == 0o600
    assert html.encode() == ReportHistory(data_dir).path(entry.html).read_bytes()
    found = re.findall(r'<li data-check="([^"]+)">(.*?)</li>', html, re.S)
    assert [(check, _text(body)) for check, body in found] == [
        (f["check"], f"[{f['check']}] {f['message']} Fix: {f['fix']}") for f in expected
    ]


def test_a_postgresql_index_is_reported_with_its_known_limitation(
    data_dir: Path, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "assessment.html"
    code = main(["selfcheck", "--data", str(data_dir), "--report", str(out)], environ={})
    text = _text(out.read_text())
    if db_url:
        assert code == 1
        assert "index PostgreSQL: the index is in clear on its server (known limitation" in text
    else:
        assert code == 0
        assert "index SQLCipher" in text


def test_a_report_ending_in_pdf_is_a_pdf_and_both_are_kept(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "assessment.pdf"
    main(["selfcheck", "--data", str(data_dir), "--report", str(out)], environ={})
    assert out.read_bytes().startswith(b"%PDF-")
    (entry,) = ReportHistory(data_dir).entries()
    assert ReportHistory(data_dir).path(entry.pdf).read_bytes() == out.read_bytes()
    assert ReportHistory(data_dir).path(entry.html).read_bytes().startswith(b"<!doctype html>")


def test_json_and_report_cannot_be_asked_together(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "assessment.html"
    with pytest.raises(SystemExit) as stopped:
        main(["selfcheck", "--data", str(data_dir), "--json", "--report", str(out)], environ={})
    assert stopped.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not out.exists()


def test_a_report_that_cannot_be_written_is_one_line_of_error(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "assessment.html"
    assert main(["selfcheck", "--data", str(data_dir), "--report", str(out)], environ={}) == 2
    assert f"cannot write the report to {out}: No such file or directory" in capsys.readouterr().err


def test_the_report_itself_is_a_checkpoint_that_pacs_audit_verify_accepts(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "assessment.html"
    main(["selfcheck", "--data", str(data_dir), "--report", str(out)], environ={})
    main(["selfcheck", "--data", str(data_dir)], environ={})  # the trail goes on after the report
    capsys.readouterr()
    assert main(["audit", "verify", "--data", str(data_dir), "--checkpoint", str(out)], environ={}) == 0
    assert f"1 checkpoints of this archive in {out}: trail holds every one" in capsys.readouterr().out
