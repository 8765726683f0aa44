"""Shared pieces of the command line tests: run ``pacs``, read its one-line errors, open its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.config import Settings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    assert "Traceback" not in err
    return lines[0]


def _settings(data: Path) -> Settings:
    from pacs.core.config import load_settings

    return load_settings(data, {})
