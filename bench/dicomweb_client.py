"""The DICOMweb client of ``bench/web_dicomweb.py``: one keep-alive connection, any ``Accept``, streamed
bodies, and just enough multipart/related parsing to check what came back.
"""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.dicom_servers import BenchError
from bench.web_client import HttpsClient, Reply, new_user
from pacs.core.accounts import Accounts
from pacs.core.context import Context
from pacs.core.tokens import Tokens

CHUNK = 1 << 20
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass
class Streamed:
    """A response read chunk by chunk and dropped: its size, parts and timing."""

    status: int
    content_type: str
    nbytes: int
    parts: int
    first_byte_ms: float
    ms: float
    client_cpu_ms: float  # this process's CPU time while reading it (TLS decryption, counting)


class DicomwebClient(HttpsClient):
    """``web_client.HttpsClient``'s keep-alive connection with fixed headers (``Authorization``) and any
    ``Accept``; without `cafile` plain HTTP. A reconnection is never part of a timed request.
    """

    def __init__(self, host: str, port: int, cafile: Path | None, headers: dict[str, str]) -> None:
        super().__init__(host, port, cafile)
        self.headers = headers

    def _send(self, path: str, accept: str) -> tuple[http.client.HTTPResponse, float]:
        """GET `path`; the response (headers read) and when the request was sent."""
        headers = {**self.headers, "Accept": accept}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                began = time.perf_counter()
                connection.request("GET", path, headers=headers)
                return connection.getresponse(), began
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, accept: str) -> Reply:
        """The whole response; `ms` from sending the request to its last byte."""
        response, began = self._send(path, accept)
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.will_close:
            self.close()
        return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, body, elapsed)

    def stream(self, path: str, accept: str) -> Streamed:
        """The response read in 1 MB chunks and counted, not kept; multipart parts counted on the way."""
        cpu = time.process_time()
        response, began = self._send(path, accept)
        content_type = response.headers.get("Content-Type", "")
        delimiter = b"--" + boundary(content_type).encode() if "multipart" in content_type else b""
        nbytes = delimiters = 0
        first_byte_ms = 0.0
        tail = b""
        while chunk := response.read(CHUNK):
            if not nbytes:
                first_byte_ms = (time.perf_counter() - began) * 1000
            nbytes += len(chunk)
            if delimiter:
                window = tail + chunk
                delimiters += window.count(delimiter)
                tail = window[-(len(delimiter) - 1) :]
        elapsed = (time.perf_counter() - began) * 1000
        if response.will_close:
            self.close()
        parts = max(0, delimiters - 1)  # the last delimiter closes the body
        client_cpu_ms = (time.process_time() - cpu) * 1000
        return Streamed(response.status, content_type, nbytes, parts, first_byte_ms, elapsed, client_cpu_ms)


def bearer_headers(pacs: Context, purpose: str) -> dict[str, str]:
    """``Authorization: Bearer`` with a new read token (one day) of a new physician account."""
    name, _ = new_user(pacs, purpose)
    accounts = Accounts(pacs.database, pacs.keyring, audit=pacs.audit)
    _, secret = Tokens(pacs.database, accounts, pacs.audit).create(name, f"bench {purpose}", ["read"], days=1)
    return {"Authorization": f"Bearer {secret}"}


def boundary(content_type: str) -> str:
    """The boundary parameter of a multipart content type."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise BenchError(f"no boundary in {content_type!r}")
    return match.group(1)


def multipart_parts(reply: Reply) -> list[tuple[dict[str, str], bytes]]:
    """The parts (lower-case headers, payload) of a multipart/related response held whole."""
    content_type = reply.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/related"):
        raise BenchError(f"not multipart/related but {content_type!r}")
    delimiter = b"--" + boundary(content_type).encode()
    parts = []
    for segment in reply.body.split(delimiter)[1:]:
        if segment.startswith(b"--"):
            break
        head, _, payload = segment.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload.removesuffix(b"\r\n")))
    return parts
