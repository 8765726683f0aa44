"""Durability: a writer killed with SIGKILL loses no object whose store() had returned."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from pacs.cli import main
from pacs.core.config import Settings, load_settings
from pacs.core.context import open_pacs
from tests.conftest import REPO
from tests.data.make_series import make_ct_series

# Stores every file named on stdin and reports each one only after store() returned.
STORE_LOOP = """
import sys
from pathlib import Path
from pacs.core.config import load_settings
from pacs.core.context import open_pacs

pacs = open_pacs(load_settings(Path(sys.argv[1]), {}))
for line in sys.stdin:
    result = pacs.archive.store(Path(line.strip()))
    print("STORED", result.sop_uid, flush=True)
"""


@pytest.fixture(scope="module")
def two_hundred(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """200 CT slices of 128x128 (about 33 KB each)."""
    return make_ct_series(tmp_path_factory.mktemp("ct200"), slices=200, rows=128, columns=128)


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_during_import_loses_no_acknowledged_object(
    settings: Settings, two_hundred: list[Path], capsys: pytest.CaptureFixture[str], attempt: int
) -> None:
    kill_after = random.Random(attempt).randint(20, 180)
    child = subprocess.Popen(
        [sys.executable, "-c", STORE_LOOP, str(settings.data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("".join(f"{path}\n" for path in two_hundred))
    child.stdin.flush()
    acknowledged: list[str] = []
    while len(acknowledged) < kill_after:
        line = child.stdout.readline()
        assert line.startswith("STORED "), f"writer stopped early: {line!r}"
        acknowledged.append(line.split()[1])
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    child.stdin.close()

    assert main(["verify", "--data", str(settings.data_dir)], environ={}) == 0
    assert "all intact" in capsys.readouterr().out
    by_uid = {_sop_uid(path): path for path in two_hundred}
    pacs = open_pacs(load_settings(settings.data_dir, {}))
    try:
        for uid in acknowledged:
            with pacs.archive.open(uid) as stream:
                assert stream.read() == by_uid[uid].read_bytes()
        report = pacs.archive.verify()
        assert report.ok and report.orphans == [] and report.temp_files == []
        assert report.checked >= len(acknowledged)
    finally:
        pacs.close()


def test_sigkill_during_pacs_import_leaves_an_archive_that_verifies_after_clean_up(
    settings: Settings, two_hundred: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pacs_command = Path(sys.executable).with_name("pacs")
    child = subprocess.Popen(
        [
            str(pacs_command),
            "import",
            str(two_hundred[0].parent),
            "--quiet",
            "--data",
            str(settings.data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list(settings.blob_dir.glob("??/*.blob"))) < 60:
        assert child.poll() is None and time.monotonic() < deadline, "pacs import ended before it was killed"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)

    assert main(["verify", "--data", str(settings.data_dir)], environ={}) == 0
    assert "all intact" in capsys.readouterr().out
    by_uid = {_sop_uid(path): path for path in two_hundred}
    pacs = open_pacs(load_settings(settings.data_dir, {}))
    try:
        report = pacs.archive.verify()
        stored = [uid for uid in by_uid if pacs.archive.find("IMAGE", _image_keys(uid))]
        for uid in stored:
            with pacs.archive.open(uid) as stream:
                assert stream.read() == by_uid[uid].read_bytes()
    finally:
        pacs.close()
    assert report.ok and report.orphans == [] and report.temp_files == []
    # A blob is on disk just before its index row is committed.
    assert 59 <= len(stored) < 200 and report.checked == len(stored)


def _image_keys(sop_uid: str) -> Dataset:
    keys = Dataset()
    keys.SOPInstanceUID = sop_uid
    return keys


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
