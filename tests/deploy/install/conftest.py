"""install.sh creates a user, changes owners and switches users: every test here needs root.

install.sh also locks itself and refuses to run beside another run, so the modules here take turns
(pytest-xdist would run them side by side); each holds a lock file while its tests run.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCK = Path(tempfile.gettempdir()) / "pacs-install-tests.lock"


@pytest.fixture(scope="module", autouse=True)
def _one_module_at_a_time() -> Iterator[None]:
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("install.sh creates a user, changes owners and switches users: run these tests as root")
