"""Fixtures of the admin page tests: the web viewer with the real admin backend, and an admin."""

from __future__ import annotations

import pytest

from pacs.core.context import Context
from tests.web.admin.admin_helpers import (
    make_admin_web,
)
from tests.web.web_helpers import (
    ADMIN,
    Browser,
    Web,
)


@pytest.fixture
def web(pacs: Context) -> Web:
    return make_admin_web(pacs)


@pytest.fixture
def boss(web: Web) -> Browser:
    """An admin (not a physician), logged in."""
    return web.logged_in(web.user("boss", ADMIN))
