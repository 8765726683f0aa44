"""Fixtures of the web login tests: the web viewer on an embedded SQLCipher archive.

``web`` (the web viewer on each database backend) comes from the web tests' conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pacs.core.context import Context
from tests.web.web_helpers import (
    Web,
    make_web,
    sqlite_pacs,
)


@pytest.fixture
def lite_pacs(tmp_path: Path) -> Iterator[Context]:
    yield from sqlite_pacs(tmp_path)


@pytest.fixture
def lite(lite_pacs: Context) -> Web:
    """The web viewer on the embedded index only."""
    return make_web(lite_pacs)
