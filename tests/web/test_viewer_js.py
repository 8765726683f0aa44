"""The viewer's JavaScript: its pure modules pass their Node tests (tests/js), and its modules stay loadable.

The pure modules (frame decoding, windowing, geometry, slices) are tested under Node's
built-in test runner. Node is required like Chromium for the browser tests: without it
these tests fail, never skip (scripts/dev-setup.sh installs the Debian package nodejs).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

JS_TESTS = sorted((REPO / "tests" / "js").glob("*.test.mjs"))
MODULES = REPO / "webviewer" / "static" / "viewer"
VIEWER_PAGE = REPO / "webviewer" / "templates" / "viewer.html"


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is missing (apt-get install nodejs, or scripts/dev-setup.sh)")
    return path


def test_the_pure_viewer_modules_pass_their_node_tests() -> None:
    assert JS_TESTS, "no tests/js/*.test.mjs"
    # The files, not the folder: Node 21 and later take globs, not directories.
    result = subprocess.run(
        [node(), "--test", "--test-reporter=tap", *map(str, JS_TESTS)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    report = result.stdout + result.stderr
    summary = dict(re.findall(r"^# (pass|fail) (\d+)$", result.stdout, re.MULTILINE))
    assert result.returncode == 0, report[-6000:]
    assert summary.get("fail") == "0" and int(summary.get("pass", 0)) > 0, report[-6000:]


def test_the_viewer_page_preloads_every_module_of_the_viewer() -> None:
    listed = re.search(r"set modules = \[(.*?)\]", VIEWER_PAGE.read_text(), re.DOTALL)
    assert listed is not None, "viewer.html lists no modules to preload"
    preloaded = sorted(re.findall(r'"([\w-]+)"', listed.group(1)))
    assert preloaded == sorted(path.stem for path in MODULES.glob("*.js"))


def test_every_viewer_module_says_what_it_owns_and_stays_under_400_lines() -> None:
    modules = [REPO / "webviewer" / "static" / "viewer.js", *sorted(MODULES.glob("*.js"))]
    for path in modules:
        text = path.read_text()
        assert text.startswith("/*\n * "), f"{path.name} does not start with a header comment"
        assert len(text.splitlines()) <= 400, f"{path.name} has over 400 lines"
