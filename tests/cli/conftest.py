"""Fixtures of the command line tests: an initialised data directory on each index backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.core.config import Settings


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    """An initialised data directory (on each index backend)."""
    return settings.data_dir
