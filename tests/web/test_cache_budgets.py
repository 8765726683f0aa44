"""Every in-memory cache of the web process keeps the budget it is configured with.

The budgets are set as an admin sets them, in ``pacs.toml`` or as ``PACS_WEB_*`` variables;
the app is the one ``pacs serve`` builds from those settings (:class:`pacs.serve.https.WebServer`),
read with a DICOMweb token. Each test fills a cache with many times its budget and measures
(:mod:`tracemalloc`) what the process still holds afterwards: at most the budget and a little
slack (without a bound, everything asked for stays). Counting the archive's reads shows the
cache still works: the latest item is served from memory, the first one read again.
"""

from __future__ import annotations

import gc
import re
import shutil
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from pacs.core.accounts import Accounts
from pacs.core.config import CONFIG_NAME, load_settings
from pacs.core.context import Context, initialise, open_pacs
from pacs.core.tokens import _REMEMBERED_ACCESSES, Tokens
from pacs.serve.https import WebServer
from storage.framemap import FrameMap
from storage.frames import MAPS_BUDGET
from tests.web.dicomweb_helpers import RAW, frame_url
from tests.web.test_documents_bounded import _large_image
from tests.web.test_large_object import _header, _part10, receive
from tests.web.viewer_live import PASSWORD
from tests.web.web_helpers import PHYSICIAN, Clock, Web

CLINIC_ADDRESS = "192.168.1.20"  # in the default [web] allowed_networks, as pacs serve builds the app

MiB = 2**20
FRAMES = 24  # 2 MiB each
HEADERS = 10  # each about 230 KB encoded, 4.3 MB parsed, counted as 5.5 MB
REFERENCES = 2000  # items of each header's sequence
FRAGMENTS = 20_000  # of each object whose frame map is large: about 4 MB parsed
SLACK = MiB // 2


@dataclass(frozen=True)
class Archive:
    """The archive, its original pacs.toml, a token and what is stored."""

    pacs: Context
    toml: str
    token: str
    frames: Dataset  # a 24-frame image
    headers: list[Dataset]  # small images with long headers


def _long_header() -> tuple[Dataset, Iterator[bytes]]:
    """An 8 x 8 image whose header holds a sequence of :data:`REFERENCES` items."""
    ds = _header(1, ExplicitVRLittleEndian)
    ds.Rows = ds.Columns = 8
    items = []
    for _ in range(REFERENCES):
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, generate_uid()
        items.append(item)
    ds.ReferencedImageSequence = items
    return ds, _part10(ds, b"\xe0\x7f\x10\x00OW\x00\x00" + (128).to_bytes(4, "little"), iter([bytes(128)]))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("budgets")
    settings = initialise(root / "data", ae_title="PACS", hostname="localhost", db_url="", user="test")
    pacs = open_pacs(settings)
    frames, pieces = _large_image(FRAMES)
    receive(pacs, pieces)
    headers = []
    for _ in range(HEADERS):
        ds, pieces = _long_header()
        receive(pacs, pieces)
        headers.append(ds)
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add("reader", PHYSICIAN, PASSWORD)
    token = Tokens(pacs.database, accounts, pacs.audit).create("reader", "budgets", {"read"})[1]
    try:
        yield Archive(pacs, (settings.data_dir / CONFIG_NAME).read_text(), token, frames, headers)
    finally:
        pacs.close()
        shutil.rmtree(root, ignore_errors=True)


def served(archive: Archive, toml: dict[str, int], env: dict[str, str]) -> tuple[FlaskClient, Flask]:
    """The app ``pacs serve`` builds with `toml` set in [web] of pacs.toml and `env`, and a token's client."""
    text = archive.toml
    for key, value in toml.items():
        text, found = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert found == 1, key
    data_dir = archive.pacs.settings.data_dir
    (data_dir / CONFIG_NAME).write_text(text)
    app = WebServer(replace(archive.pacs, settings=load_settings(data_dir, env))).app
    client = app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "REMOTE_ADDR": CLINIC_ADDRESS})
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {archive.token}"
    return client, app


def retained(requests: Callable[[], None]) -> int:
    """Bytes Python allocated during `requests` that are still held after them."""
    gc.collect()
    tracemalloc.start()
    try:
        requests()
        gc.collect()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


class Reads:
    """Counts calls of one method of the archive (the real one runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> None:
        self.count = 0
        real = getattr(target, name)

        def counted(*args: Any) -> Any:
            self.count += 1
            return real(*args)

        monkeypatch.setattr(target, name, counted)

    def of(self, request: Callable[[], Any]) -> int:
        """How many calls `request` made."""
        before = self.count
        request()
        return self.count - before


def _ok(client: FlaskClient, url: str, headers: dict[str, str] | None = None) -> None:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code, response.data[:200])


def test_the_frame_cache_keeps_the_budget_set_in_the_environment(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = served(archive, {}, {"PACS_WEB_FRAME_CACHE_MB": "8"})
    assert app.extensions["pacs"].config.frame_cache_bytes == 8 * MiB
    ds = archive.frames
    url = partial_url(ds)
    _ok(client, url(1), RAW)  # the first request loads the decoders and the header: not the cache's
    held = retained(lambda: [_ok(client, url(n), RAW) for n in range(2, FRAMES + 1)])
    assert held < 8 * MiB + SLACK, f"{(FRAMES - 1) * 2} MiB of frames asked for, {held / MiB:.1f} MiB held"
    reads = Reads(monkeypatch, archive.pacs.archive, "frame_bytes")
    assert reads.of(lambda: _ok(client, url(FRAMES), RAW)) == 0
    assert reads.of(lambda: _ok(client, url(2), RAW)) == 1


def partial_url(ds: Dataset) -> Callable[[int], str]:
    return lambda number: frame_url(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, number)


def _tags(ds: Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/instances/{ds.SOPInstanceUID}/tags"


def test_the_header_cache_keeps_the_budget_set_in_pacs_toml(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The viewer's tags read every element of a header: it is held at its largest."""
    _, app = served(archive, {"object_cache_mb": 12, "frame_cache_mb": 0}, {})
    services = app.extensions["pacs"]
    assert services.config.object_cache_bytes == 12 * MiB
    web = Web(app, archive.pacs, services.accounts, Clock(time.time()))  # the app's accounts keep real time
    client = web.logged_in(web.user("doctor"), CLINIC_ADDRESS).client
    _ok(client, _tags(archive.frames))
    held = retained(lambda: [_ok(client, _tags(ds)) for ds in archive.headers])
    assert held < 12 * MiB + SLACK, f"{HEADERS} headers of 4.3 MB parsed asked for, {held / MiB:.1f} MiB held"
    reads = Reads(monkeypatch, archive.pacs.archive, "dataset_without_pixels")
    assert reads.of(lambda: _ok(client, _tags(archive.headers[-1]))) == 0
    assert reads.of(lambda: _ok(client, _tags(archive.headers[0]))) == 1


def _metadata(ds: Dataset) -> str:
    series = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    return f"{series}/instances/{ds.SOPInstanceUID}/metadata"


def test_the_metadata_cache_keeps_the_budget_set_in_the_environment(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = served(archive, {}, {"PACS_WEB_METADATA_CACHE_MB": "1"})
    assert app.extensions["pacs"].config.metadata_cache_bytes == MiB
    _ok(client, _metadata(archive.frames))
    held = retained(lambda: [_ok(client, _metadata(ds)) for ds in archive.headers])
    assert held < MiB + SLACK, f"{HEADERS} JSON texts of 330 KB asked for, {held / MiB:.1f} MiB held"
    reads = Reads(monkeypatch, archive.pacs.archive.json_texts, "texts")  # the index, on a cache miss
    assert reads.of(lambda: _ok(client, _metadata(archive.headers[-1]))) == 0
    assert reads.of(lambda: _ok(client, _metadata(archive.headers[0]))) == 1


def test_a_cache_budget_of_zero_keeps_nothing(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = served(archive, {"frame_cache_mb": 0}, {"PACS_WEB_OBJECT_CACHE_MB": "0"})
    reads = Reads(monkeypatch, archive.pacs.archive, "frame_bytes")
    url = partial_url(archive.frames)
    assert [reads.of(lambda: _ok(client, url(1), RAW)) for _ in range(2)] == [1, 1]


def test_the_token_access_memory_keeps_its_number_of_entries(archive: Archive) -> None:
    """Each entry is a (token id, study UID) key and a time: about 300 bytes, 3 MB at most in all."""
    _, app = served(archive, {}, {})
    tokens: Tokens = app.extensions["pacs"].tokens
    (token,) = tokens.all()
    count = 2 * _REMEMBERED_ACCESSES

    def note_all() -> None:
        for n in range(count):
            tokens.note_access(token.id, f"1.2.826.0.1.{n}")

    held = retained(note_all)
    assert not tokens.accessed_recently(token.id, f"1.2.826.0.1.{count - _REMEMBERED_ACCESSES - 1}")
    assert tokens.accessed_recently(token.id, f"1.2.826.0.1.{count - _REMEMBERED_ACCESSES}")
    assert held < 4 * MiB, f"{held / MiB:.1f} MiB held"


def _many_fragments() -> Iterator[bytes]:
    """An encapsulated object of :data:`FRAGMENTS` one-fragment frames of a few bytes each."""
    ds = _header(FRAGMENTS, JPEGBaseline8Bit)
    ds.Rows = ds.Columns = 8
    fragment = b"\xfe\xff\x00\xe0\x08\x00\x00\x00" + b"\xff\xd8\xff\xe0\x00\x00\x00\x00"
    pixel_header = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    return _part10(ds, pixel_header, iter([fragment * FRAGMENTS, b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"]))


def test_the_frame_maps_kept_in_memory_keep_their_byte_budget(archive: Archive) -> None:
    """Not the number of maps: one of an object of a million fragments takes about 200 MB."""
    stored = archive.pacs.archive
    infos = []
    for _ in range(16):  # counted at 4 MB each: 64 MB in all
        incoming = stored.receive()
        for piece in _many_fragments():
            incoming.write(piece)
        infos.append(stored.instance(incoming.finish().sop_uid))
    maps: list[weakref.ref[FrameMap]] = []
    held = retained(lambda: maps.extend(weakref.ref(stored.frame_map(info)) for info in infos))
    assert held < MAPS_BUDGET + SLACK, f"16 maps of {FRAGMENTS} fragments read, {held / MiB:.1f} MiB held"
    assert maps[-1]() is not None and len(maps[-1]().fragments) == FRAGMENTS  # the latest is kept
    assert maps[0]() is None  # the first was let go
