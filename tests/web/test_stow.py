"""STOW-RS (PS3.18 10.5): objects posted as multipart/related application/dicom go the C-STORE way in.

In process (both backends): what is stored is byte-identical to what was posted, each part that
is not stored is named in the Failed SOP Sequence with its reason, the store is audited, and
only a physician's session (with its CSRF token) or a token with the store scope may post. Live
(``pacs serve`` over HTTPS): a part of 320 MiB streams in while the web worker grows by less than
100 MB, and neither its pixels nor its patient's name reach the disk in clear.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from werkzeug.http import parse_options_header
from werkzeug.test import TestResponse

from pacs.core.accounts import Accounts
from pacs.core.audit import EventID
from pacs.core.context import Context
from pacs.core.tokens import Tokens
from pacs.serve.https import MAX_STORES, THREADS
from storage.archive import NotFoundError
from tests.conftest import report_figure
from tests.storage.ingest_disks import RssSampler, idle_rss
from tests.storage.ingest_objects import (
    PATIENT_NAME,
    SentObject,
    files_holding,
    new_pixel_pattern,
    phi_needles,
    write_object,
)
from tests.web.viewer_live import PASSWORD, Live, serve_archive
from tests.web.web_helpers import ADDRESS, ADMIN, Browser, Web, details
from webviewer.multipart import Part, related
from webviewer.multipart_reader import MultipartReader

BOUNDARY = "stow-test-boundary-7f3a"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
TRANSFERRED = str(EventID.INSTANCES_TRANSFERRED)
OUT_OF_RESOURCES, CANNOT_UNDERSTAND, STUDY_MISMATCH = 0xA700, 0xC000, 0xC409
LARGE_FRAMES = 640  # 320 MiB of pixel data
MIB = 1 << 20


def multipart(parts: list[bytes]) -> bytes:
    """`parts` as a multipart/related body of application/dicom parts."""
    return b"".join(related([Part("application/dicom", [part]) for part in parts], BOUNDARY))


def post_stow(
    browser: Browser, parts: list[bytes], path: str = "/dicomweb/studies", **headers: str
) -> TestResponse:
    """POST `parts` to `path` with the session of `browser` and its CSRF token."""
    headers = {"X-CSRFToken": browser.token("/account/password"), **headers}
    return browser.client.post(path, data=multipart(parts), content_type=STOW_TYPE, headers=headers)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_sha256(pacs: Context, sop_uid: str) -> str:
    """SHA-256 of the stored object, as the archive decrypts it."""
    with pacs.archive.open_instance(pacs.archive.instance(sop_uid)) as stream:
        return sha256(stream.read())


def items(response: TestResponse, keyword_tag: str) -> list[dict[str, Any]]:
    """The items of a sequence (by its tag) in a DICOM JSON response."""
    return list(response.get_json().get(keyword_tag, {}).get("Value", []))


def value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value", [])
    return values[0] if values else ""


def referenced(response: TestResponse) -> list[str]:
    """The SOP Instance UIDs of the Referenced SOP Sequence."""
    return [value(item, "00081155") for item in items(response, "00081199")]


def failures(response: TestResponse) -> list[tuple[str, int]]:
    """(SOP Instance UID, Failure Reason) of each item of the Failed SOP Sequence."""
    return [(value(item, "00081155"), value(item, "00081197")) for item in items(response, "00081198")]


def test_stow_stores_each_part_byte_identical_and_audits_it(web: Web, doc: Browser, ct_dir: Path) -> None:
    files = sorted(ct_dir.glob("*.dcm"))[:2]
    response = post_stow(doc, [f.read_bytes() for f in files], Accept="application/dicom+json")
    assert response.status_code == 200, response.text
    assert response.mimetype == "application/dicom+json"
    sent = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    study = sent[0].StudyInstanceUID
    assert value(response.get_json(), "00081190") == f"https://localhost/dicomweb/studies/{study}"
    assert referenced(response) == [ds.SOPInstanceUID for ds in sent]
    urls = [value(item, "00081190") for item in items(response, "00081199")]
    assert urls[0].endswith(
        f"/studies/{study}/series/{sent[0].SeriesInstanceUID}/instances/{sent[0].SOPInstanceUID}"
    )
    for path, ds in zip(files, sent, strict=True):
        assert stored_sha256(web.pacs, ds.SOPInstanceUID) == sha256(path.read_bytes())
    (record,) = [r for r in web.audit(TRANSFERRED, user="doc") if r.study_uid == study]
    assert record.source == ADDRESS
    assert details(record) | {"stored": 2, "via": "STOW-RS"} == details(record)


def test_stow_takes_a_body_beyond_the_apps_limit(web: Web, doc: Browser, tmp_path: Path) -> None:
    sent = write_object(tmp_path / "us.dcm", frames=2, pattern=new_pixel_pattern())
    response = post_stow(doc, [sent.path.read_bytes()])
    assert response.status_code == 200, response.text
    assert stored_sha256(web.pacs, sent.sop_uid) == sha256(sent.path.read_bytes())


def test_stow_names_each_part_it_cannot_store_with_its_reason(web: Web, doc: Browser, ct_dir: Path) -> None:
    good, cut = sorted(ct_dir.glob("*.dcm"))[2:4]
    cut_sop = pydicom.dcmread(cut, stop_before_pixels=True).SOPInstanceUID
    truncated = cut.read_bytes()[: cut.stat().st_size * 2 // 3]
    response = post_stow(doc, [good.read_bytes(), b"this is not a DICOM file", truncated])
    assert response.status_code == 202, response.text
    assert referenced(response) == [pydicom.dcmread(good, stop_before_pixels=True).SOPInstanceUID]
    assert failures(response) == [("", CANNOT_UNDERSTAND), (cut_sop, CANNOT_UNDERSTAND)]
    with pytest.raises(NotFoundError):
        web.pacs.archive.instance(cut_sop)
    (refused,) = [r for r in web.audit(TRANSFERRED, user="doc") if "refused_objects" in details(r)]
    assert details(refused)["refused_objects"] == 2


def test_stow_to_a_study_refuses_an_object_of_another_study(web: Web, doc: Browser, ct_dir: Path) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[4]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    response = post_stow(doc, [path.read_bytes()], "/dicomweb/studies/1.2.826.0.1.3680043.2.1143.9")
    assert response.status_code == 409, response.text
    assert failures(response) == [(ds.SOPInstanceUID, STUDY_MISMATCH)]
    with pytest.raises(NotFoundError):
        web.pacs.archive.instance(ds.SOPInstanceUID)
    response = post_stow(doc, [path.read_bytes()], f"/dicomweb/studies/{ds.StudyInstanceUID}")
    assert response.status_code == 200, response.text
    assert value(response.get_json(), "00081190").endswith(f"/dicomweb/studies/{ds.StudyInstanceUID}")


@pytest.mark.parametrize(
    ("limit", "setting"),
    [("min_free_bytes", 1 << 60), ("max_object_bytes", 4096)],
    ids=["disk full", "too large"],
)
def test_stow_out_of_resources_fails_the_part(
    web: Web, doc: Browser, ct_dir: Path, limit: str, setting: int
) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[5]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    setattr(web.pacs.archive, limit, setting)
    response = post_stow(doc, [path.read_bytes(), path.read_bytes()])
    assert response.status_code == 409, response.text
    assert failures(response) == [(ds.SOPInstanceUID, OUT_OF_RESOURCES)] * 2
    with pytest.raises(NotFoundError):
        web.pacs.archive.instance(ds.SOPInstanceUID)


def test_stow_refuses_what_is_not_a_multipart_dicom_body(doc: Browser, ct_dir: Path) -> None:
    token = {"X-CSRFToken": doc.token("/account/password")}
    data = sorted(ct_dir.glob("*.dcm"))[0].read_bytes()

    def post(body: bytes, content_type: str) -> TestResponse:
        return doc.client.post("/dicomweb/studies", data=body, content_type=content_type, headers=token)

    assert post(data, "application/dicom").status_code == 415
    assert (
        post(multipart([data]), STOW_TYPE.replace("application/dicom", "application/dicom+json")).status_code
        == 415
    )
    assert post(multipart([data]), 'multipart/related; type="application/dicom"').status_code == 400
    assert post(b"--another-boundary\r\n\r\nxx\r\n--another-boundary--", STOW_TYPE).status_code == 400
    cut_off = multipart([data])[: -len(f"\r\n--{BOUNDARY}--\r\n") - 10]
    response = post(cut_off, STOW_TYPE)
    assert response.status_code == 409 and failures(response)[0][1] == CANNOT_UNDERSTAND


@pytest.mark.parametrize("read_size", [1, 7, 1 << 20])
def test_the_multipart_reader_finds_delimiters_split_across_reads(read_size: int) -> None:
    contents = [b"", b"\r\n--stow-test-boundary-7f3", b"x" * 5000 + b"\r\n--" + BOUNDARY.encode()[:-1]]
    body = b"preamble\r\n" + multipart(contents) + b"epilogue"
    reader = MultipartReader(io.BytesIO(body), BOUNDARY, read_size=read_size)
    read = [(part.content_type, b"".join(part.chunks())) for part in reader.parts()]
    assert read == [("application/dicom", content) for content in contents]


def with_token(web: Web, secret: str, body: bytes) -> TestResponse:
    """POST `body` as a DICOMweb client with the token `secret`: no cookie, no CSRF token."""
    client = web.app.test_client()
    client.environ_base.update({"wsgi.url_scheme": "https", "REMOTE_ADDR": ADDRESS})
    headers = {"Authorization": f"Bearer {secret}"}
    return client.post("/dicomweb/studies", data=body, content_type=STOW_TYPE, headers=headers)


def test_stow_needs_a_physicians_session_or_a_store_token(web: Web, doc: Browser, ct_dir: Path) -> None:
    path = sorted(ct_dir.glob("*.dcm"))[1]
    body = multipart([path.read_bytes()])
    tokens = web.app.extensions["pacs"].tokens
    _, read_only = tokens.create("doc", "viewer", {"read"})
    _, store = tokens.create("doc", "uploader", {"read", "store"})
    admin = web.logged_in(web.user("ada", ADMIN))
    assert post_stow(admin, [path.read_bytes()]).status_code == 403
    assert web.audit(str(EventID.SECURITY_ALERT), user="ada")
    assert doc.client.post("/dicomweb/studies", data=body, content_type=STOW_TYPE).status_code == 400
    anonymous = web.browser()
    headers = {"X-CSRFToken": anonymous.token("/login")}
    response = anonymous.client.post("/dicomweb/studies", data=body, content_type=STOW_TYPE, headers=headers)
    assert response.status_code == 401
    assert with_token(web, read_only, body).status_code == 403
    with pytest.raises(NotFoundError):
        web.pacs.archive.instance(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert with_token(web, store, body).status_code == 200


# -- live: a large part streams into ``pacs serve`` ------------------------------------------------


def _seed_uploader(pacs: Context) -> str:
    """A physician "uploader" with a store token; its secret."""
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    accounts.add("uploader", frozenset({"physician"}), PASSWORD)
    _, secret = Tokens(pacs.database, accounts, pacs.audit).create("uploader", "stow", {"read", "store"})
    return secret


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live[str]]:
    with serve_archive(tmp_path_factory.mktemp("stow-live"), _seed_uploader, []) as served:
        yield served


def _web_process(data_dir: Path) -> int:
    """The pid of the process serving the web of ``pacs serve`` for `data_dir` (its web worker, if forked)."""
    serving: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if b"serve" in command and str(data_dir).encode() in command:
                serving[int(entry.name)] = (entry / "comm").read_text().strip()
        except (OSError, ValueError):
            continue
    web = [pid for pid, name in serving.items() if name == "pacs-web"] or list(serving)
    assert len(web) == 1, f"not one web process of pacs serve: {serving}"
    return web[0]


def _body(path: Path) -> Iterator[bytes]:
    """The multipart body of the file at `path`, read from it a MiB at a time."""

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as source:
            while chunk := source.read(MIB):
                yield chunk

    return related([Part("application/dicom", chunks())], BOUNDARY)


def _retrieved_sha256(live: Live[str], sent: SentObject, series_uid: str) -> str:
    """SHA-256 of the object as WADO-RS retrieves it (read as it streams, with the STOW-RS reader)."""
    connection = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=120)
    path = f"/dicomweb/studies/{sent.study_uid}/series/{series_uid}/instances/{sent.sop_uid}"
    accept = 'multipart/related; type="application/dicom"'
    connection.request("GET", path, headers={"Authorization": f"Bearer {live.seeded}", "Accept": accept})
    response = connection.getresponse()
    assert response.status == 200, response.read()[:200]
    _, params = parse_options_header(response.getheader("Content-Type", ""))
    digests = []
    for part in MultipartReader(response, params["boundary"]).parts():
        digests.append(hashlib.sha256())
        for chunk in part.chunks():
            digests[-1].update(chunk)
    connection.close()
    (digest,) = digests
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_large_part_streams_in_with_bounded_memory_and_nothing_in_clear(
    live: Live[str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pattern = new_pixel_pattern()
    sent = write_object(tmp_path / "large.dcm", frames=LARGE_FRAMES, pattern=pattern)
    worker = _web_process(live.home.parent / "data")
    idle = idle_rss([worker])[worker]
    connection = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=120)
    headers = {"Authorization": f"Bearer {live.seeded}", "Content-Type": STOW_TYPE}
    started = time.monotonic()
    with RssSampler(worker, [worker]) as sampler:
        connection.request("POST", "/dicomweb/studies", _body(sent.path), headers, encode_chunked=True)
        response = connection.getresponse()
        answer = json.loads(response.read())
    elapsed = time.monotonic() - started
    connection.close()
    assert response.status == 200, answer
    (item,) = answer["00081199"]["Value"]
    assert value(item, "00081155") == sent.sop_uid
    growth = sampler.peak[worker] - idle
    rate = sent.size / MIB / elapsed
    report_figure(
        request.config, "STOW-RS of 320 MiB", f"web worker +{growth / MIB:.0f} MiB, {rate:.0f} MiB/s"
    )
    assert growth < 100 * 10**6, f"the web worker grew by {growth / MIB:.0f} MiB"
    assert files_holding(live.home.parent / "data", phi_needles(pattern, PATIENT_NAME)) == {}
    series_uid = value(item, "00081190").split("/series/")[1].split("/")[0]
    assert _retrieved_sha256(live, sent, series_uid) == _file_sha256(sent.path)


def _stalled_upload(live: Live[str]) -> http.client.HTTPSConnection:
    """A STOW-RS upload whose client sent its first bytes and then waits."""
    connection = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=30)
    connection.putrequest("POST", "/dicomweb/studies")
    for name, header in {
        "Authorization": f"Bearer {live.seeded}",
        "Content-Type": STOW_TYPE,
        "Transfer-Encoding": "chunked",
    }.items():
        connection.putheader(name, header)
    connection.endheaders()
    first = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    connection.send(b"%x\r\n%s\r\n" % (len(first), first))
    return connection


def test_uploads_cannot_take_every_worker_from_the_viewer(live: Live[str]) -> None:
    uploads = [_stalled_upload(live) for _ in range(THREADS)]
    try:
        time.sleep(1.0)  # the stalled uploads reach the app
        refused = uploads[MAX_STORES:]
        for connection in refused:
            response = connection.getresponse()
            assert response.status == 503
            assert b"uploads are in progress" in response.read()
        # Without the limit, the login page waited for an upload to give its thread back.
        viewer = http.client.HTTPSConnection("localhost", live.port, context=live.tls(), timeout=5)
        viewer.request("GET", "/login")
        assert viewer.getresponse().status == 200
        viewer.close()
    finally:
        for connection in uploads:
            connection.close()
