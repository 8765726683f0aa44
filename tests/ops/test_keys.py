"""Key rotation: ``pacs keys rotate`` re-wraps data keys, is resumable and needs no downtime."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.config import Settings
from pacs.core.context import Context, open_pacs
from storage import rotation
from tests.data.make_series import make_ct_series


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


def _blob_digests(settings: Settings) -> dict[str, str]:
    return {
        str(path.relative_to(settings.blob_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in settings.blob_dir.glob("*/*.blob")
    }


def _originals(pacs: Context, source: Path) -> dict[str, bytes]:
    stored = {}
    for path in sorted(source.glob("*.dcm")):
        result = pacs.archive.store(path)
        stored[result.sop_uid] = path.read_bytes()
    return stored


@pytest.fixture
def filled(settings: Settings, tmp_path: Path) -> dict[str, bytes]:
    """An archive holding a 40-slice CT; returns the original bytes by SOP Instance UID."""
    source = tmp_path / "ct"
    make_ct_series(source, slices=40, rows=32, columns=32)
    pacs = open_pacs(settings)
    try:
        return _originals(pacs, source)
    finally:
        pacs.close()


def _assert_all_readable(settings: Settings, originals: dict[str, bytes]) -> None:
    pacs = open_pacs(settings)
    try:
        for sop_uid, data in originals.items():
            with pacs.archive.open(sop_uid) as stream:
                assert stream.read() == data
        assert pacs.archive.verify().ok
    finally:
        pacs.close()


def test_rotation_rewraps_every_data_key_without_rewriting_a_blob(
    settings: Settings, filled: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    blobs_before = _blob_digests(settings)
    code, out, _ = _run(capsys, "keys", "rotate", "--data", str(settings.data_dir), "--quiet")
    assert code == 0, out
    assert "40 data keys re-wrapped" in out
    assert (settings.key_dir / "kek-0002.key").stat().st_mode & 0o777 == 0o600
    assert _blob_digests(settings) == blobs_before
    pacs = open_pacs(settings)
    try:
        assert rotation.key_usage(pacs.database) == {2: 40}
    finally:
        pacs.close()
    _assert_all_readable(settings, filled)


def test_rotation_is_audited(
    settings: Settings, filled: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(capsys, "keys", "rotate", "--data", str(settings.data_dir), "--quiet")[0] == 0
    pacs = open_pacs(settings)
    try:
        whats = [r.details for r in pacs.audit.records() if "key rotation" in r.details]
        assert pacs.audit.verify().ok
    finally:
        pacs.close()
    assert len(whats) == 2
    assert '"what": "key rotation started"' in whats[0]
    assert '"what": "key rotation completed"' in whats[1]
    assert '"rewrapped": 40' in whats[1]


def test_interrupted_rotation_resumes_and_leaves_every_object_readable(
    settings: Settings, filled: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    pacs = open_pacs(settings)
    batches = []

    def stop_half_way(count: int) -> None:
        batches.append(count)
        if len(batches) == 3:
            raise KeyboardInterrupt

    try:
        pacs.keyring.add_version()
        with pytest.raises(KeyboardInterrupt):
            rotation.rewrap(pacs.database, pacs.keyring, batch=7, on_batch=stop_half_way)
        assert rotation.key_usage(pacs.database) == {1: 19, 2: 21}
    finally:
        pacs.close()
    _assert_all_readable(settings, filled)

    code, out, _ = _run(capsys, "keys", "rotate", "--data", str(settings.data_dir), "--quiet")
    assert code == 0
    assert "resuming the rotation to key-encryption key 2: 19 data keys left" in out
    assert not (settings.key_dir / "kek-0003.key").exists()
    code, out, _ = _run(capsys, "keys", "list", "--data", str(settings.data_dir))
    assert code == 0
    assert out.splitlines()[2].split()[:3] == ["2", "40", "current"]
    _assert_all_readable(settings, filled)


def test_a_rotation_interrupted_while_writing_the_new_key_leaves_a_usable_archive(
    settings: Settings,
    filled: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def power_cut(fd: int, data: bytes) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "write", power_cut)
    assert main(["keys", "rotate", "--data", str(settings.data_dir), "--quiet"], environ={}) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert sorted(p.name for p in settings.key_dir.iterdir() if "kek" in p.name) == ["kek-0001.key"]

    leftover = settings.key_dir / ".kek-0002.key.0123456789ab.tmp"
    leftover.write_bytes(os.urandom(32))
    code, _, err = _run(capsys, "keys", "rotate", "--data", str(settings.data_dir), "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in settings.key_dir.iterdir() if "kek" in p.name) == [
        "kek-0001.key",
        "kek-0002.key",
    ]
    _assert_all_readable(settings, filled)


def test_keys_list_fails_while_a_rotation_is_unfinished(
    settings: Settings, filled: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    pacs = open_pacs(settings)
    try:
        pacs.keyring.add_version()
    finally:
        pacs.close()
    code, out, _ = _run(capsys, "keys", "list", "--data", str(settings.data_dir))
    assert code == 1
    assert "40 data keys still under an older KEK" in out


def test_a_running_archive_follows_a_rotation_made_by_another_process(
    settings: Settings, filled: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = open_pacs(settings)
    try:
        assert server.keyring.current_version == 1
        assert _run(capsys, "keys", "rotate", "--data", str(settings.data_dir), "--quiet")[0] == 0
        for sop_uid, data in list(filled.items())[:3]:
            with server.archive.open(sop_uid) as stream:
                assert stream.read() == data
        later = tmp_path / "later"
        make_ct_series(later, slices=2, rows=32, columns=32)
        filled.update(_originals(server, later))
        assert rotation.key_usage(server.database) == {2: 42}
    finally:
        server.close()
    _assert_all_readable(settings, filled)
