"""Helpers of the WADO-RS tests: a shared in-process archive, the Studies Service's URLs, multipart answers.

The multipart/related answers are split here by an implementation of their own (RFC 2046
section 5.1.1, read strictly), not by the server's writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from werkzeug.http import parse_options_header
from werkzeug.test import TestResponse

ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'
OCTETS = 'multipart/related; type="application/octet-stream"'
VIEWER = {"Accept": "application/vnd.pacs.frame-parts, application/octet-stream;q=0.5"}
ROOT = "/dicomweb/studies"


@dataclass(frozen=True)
class Part:
    """One body part: its headers (names in lower case) and its bytes."""

    headers: dict[str, str]
    body: bytes

    @property
    def media_type(self) -> str:
        return parse_options_header(self.headers["content-type"])[0]

    @property
    def params(self) -> dict[str, str]:
        return parse_options_header(self.headers["content-type"])[1]


def url(study: str, series: str | None = None, sop: str | None = None, tail: str = "") -> str:
    """The Studies Service's URL of a study, a series or an instance, with `tail` (``/frames/1``...)."""
    path = f"{ROOT}/{study}"
    if series is not None:
        path += f"/series/{series}"
    if sop is not None:
        path += f"/instances/{sop}"
    return path + tail


def parts(response: TestResponse, media_type: str) -> list[Part]:
    """The parts of a 200/206 multipart/related answer whose root type is `media_type`."""
    assert response.status_code in (200, 206), (response.status_code, response.data[:300])
    kind, params = parse_options_header(response.headers["Content-Type"])
    assert kind == "multipart/related" and params["type"] == media_type, response.headers["Content-Type"]
    delimiter = b"--" + params["boundary"].encode()
    body = response.get_data()
    assert body.startswith(delimiter + b"\r\n") and body.endswith(b"\r\n" + delimiter + b"--\r\n")
    found = []
    for chunk in body[len(delimiter) + 2 : -len(delimiter) - 6].split(b"\r\n" + delimiter + b"\r\n"):
        head, _, content = chunk.partition(b"\r\n\r\n")
        lines = head.decode("ascii").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)
        }
        found.append(Part(headers, content))
    return found


def little_endian(array: np.ndarray) -> bytes:
    """`array`'s samples as native little endian bytes (colour interleaved)."""
    return np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
