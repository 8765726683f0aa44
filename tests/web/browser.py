"""What the browser tests do in a page and read from it, and how Chromium comes to trust the archive's CA.

The setup (``pacs serve``, readers, Chromium, watched pages) is :mod:`tests.web.viewer_live`.
Here: logging in (:func:`log_in`), opening the viewer and waiting on it, reading what it
shows (``window.viewerState``, canvas statistics), the scripts given to pages (functions
only: the CSP forbids the ``eval`` Playwright uses for expressions), and the accounts the
tests know (:class:`Reader`, :class:`Newcomer`).

Chromium trusts the archive's own CA through an NSS database in a throwaway HOME (written with
libnss3, which Chromium itself links against), so the server's certificate is verified for real.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.sync_api import Page, expect

CHROMIUM = "/usr/bin/chromium"
PHYSICIAN = frozenset({"physician"})
CT_SLICES, US_FRAMES = 40, 20
TIMEOUT_MS = 20_000


# Reported as console errors by the browser tests' `page` fixture: a violation cannot pass unseen.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""

# Statistics of the #viewport canvas as shown: how many pixels are lit, how many gray
# levels, the mean level and an FNV-1a hash of the RGB values.
CANVAS_STATS = """
() => {
  const canvas = document.getElementById("viewport");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const levels = new Set();
  let lit = 0, sum = 0, hash = 2166136261;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    if (r + g + b > 3 * 16) lit += 1;
    sum += r;
    levels.add(r);
    hash = Math.imul(hash ^ r, 16777619);
    hash = Math.imul(hash ^ g, 16777619);
    hash = Math.imul(hash ^ b, 16777619);
  }
  const pixels = data.length / 4;
  return { pixels, lit, levels: levels.size, mean: sum / pixels, hash: hash >>> 0 };
}
"""

# Playwright evaluates expressions (not functions) with eval(), which the page's CSP
# forbids: every script given to the page below is a function.
VIEWER_READY = "() => document.body.dataset.viewer === 'ready'"
CANVAS_HASH_CHANGED = f"""
(before) => {{
  const stats = ({CANVAS_STATS})();
  return stats.hash !== before && stats.lit > 0;
}}
"""


# -- trusting the archive's CA ---------------------------------------------------------------------


class _SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


class _CERTCertTrust(ctypes.Structure):
    _fields_ = [
        ("sslFlags", ctypes.c_uint),
        ("emailFlags", ctypes.c_uint),
        ("objectSigningFlags", ctypes.c_uint),
    ]


def trust_ca_for_chromium(home: Path, ca_pem: Path) -> None:
    """Create ``HOME/.pki/nssdb`` (where Chromium on Linux reads trust) with `ca_pem` as a trusted CA.

    This is what ``certutil -N --empty-password`` and ``certutil -A -t C,,`` do, done with
    libnss3 (a dependency of Chromium) because libnss3-tools may not be installed.
    """
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    der = x509.load_pem_x509_certificate(ca_pem.read_bytes()).public_bytes(Encoding.DER)
    try:
        nss = ctypes.CDLL("libnss3.so")
    except OSError as exc:
        pytest.fail(f"libnss3 (needed by Chromium) is missing: {exc}")
    void_p, char_p, c_int = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    nss.NSS_InitReadWrite.argtypes = [char_p]
    nss.PK11_GetInternalKeySlot.restype = void_p
    nss.PK11_NeedUserInit.argtypes = [void_p]
    nss.PK11_InitPin.argtypes = [void_p, char_p, char_p]
    nss.CERT_GetDefaultCertDB.restype = void_p
    nss.CERT_NewTempCertificate.restype = void_p
    nss.CERT_NewTempCertificate.argtypes = [void_p, ctypes.POINTER(_SECItem), char_p, c_int, c_int]
    nss.PK11_ImportCert.argtypes = [void_p, void_p, ctypes.c_ulong, char_p, c_int]
    nss.CERT_DecodeTrustString.argtypes = [ctypes.POINTER(_CERTCertTrust), char_p]
    nss.CERT_ChangeCertTrust.argtypes = [void_p, void_p, ctypes.POINTER(_CERTCertTrust)]
    nss.CERT_DestroyCertificate.argtypes = [void_p]
    nss.PK11_FreeSlot.argtypes = [void_p]

    assert nss.NSS_InitReadWrite(f"sql:{db}".encode()) == 0, "NSS_InitReadWrite failed"
    slot = cert = None
    try:
        slot = nss.PK11_GetInternalKeySlot()
        assert slot, "no internal NSS slot"
        if nss.PK11_NeedUserInit(slot):
            assert nss.PK11_InitPin(slot, None, b"") == 0, "PK11_InitPin failed"
        buffer = ctypes.create_string_buffer(der, len(der))
        item = _SECItem(0, ctypes.cast(buffer, ctypes.c_void_p), len(der))
        cert = nss.CERT_NewTempCertificate(nss.CERT_GetDefaultCertDB(), ctypes.byref(item), None, 0, 1)
        assert cert, "NSS could not parse the CA certificate"
        assert nss.PK11_ImportCert(slot, cert, 0, b"mini-PACS test CA", 0) == 0, "PK11_ImportCert failed"
        trust = _CERTCertTrust()
        assert nss.CERT_DecodeTrustString(ctypes.byref(trust), b"C,,") == 0
        changed = nss.CERT_ChangeCertTrust(nss.CERT_GetDefaultCertDB(), cert, ctypes.byref(trust))
        assert changed == 0, "CERT_ChangeCertTrust failed"
    finally:
        if cert:
            nss.CERT_DestroyCertificate(cert)
        if slot:
            nss.PK11_FreeSlot(slot)
        assert nss.NSS_Shutdown() == 0, "NSS_Shutdown failed"
    assert (db / "cert9.db").is_file()


@dataclass(frozen=True)
class Reader:
    """A physician who has enrolled TOTP and chosen a password before the server started."""

    name: str
    password: str
    totp: pyotp.TOTP


@dataclass(frozen=True)
class Newcomer:
    """A physician just added, with the one-time password an administrator would pass on."""

    name: str
    password: str


@dataclass(frozen=True)
class Served:
    """What the end-to-end tests know of the served archive: the study, its two series, its users."""

    study_uid: str
    ct_series: str
    us_series: str
    newcomer: str
    newcomer_password: str
    readers: dict[str, Reader] = field(default_factory=dict)

    @property
    def study_path(self) -> str:
        return f"/studies/{self.study_uid}"


def wait_for_path(page: Page, path: str) -> None:
    page.wait_for_url(lambda url: urlsplit(url).path == path)


def log_in(page: Page, name: str, password: str, code: Callable[[], str]) -> None:
    """Password, then the TOTP code; lands on the study list."""
    page.goto("/login")
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#submit")
    wait_for_path(page, "/login/totp")
    page.fill("#code", code())
    page.click("#submit")
    wait_for_path(page, "/")
    expect(page.locator("#studies")).to_be_visible()


def log_in_reader(page: Page, reader: Reader) -> None:
    log_in(page, reader.name, reader.password, reader.totp.now)


def open_viewer(page: Page, served: Served) -> None:
    """Go to the study's viewer and wait until its first image is on the canvas."""
    page.goto(served.study_path)
    page.wait_for_function(VIEWER_READY)


def viewer_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("() => ({ ...window.viewerState })")
    return state


def canvas_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = page.evaluate(CANVAS_STATS)
    return stats


def wait_for_canvas_change(page: Page, before: int) -> dict[str, Any]:
    page.wait_for_function(CANVAS_HASH_CHANGED, arg=before)
    return canvas_stats(page)


def wait_until_idle(page: Page) -> None:
    """Until every CT slice and the cine's thumbnail frame are fetched and nothing is in flight."""
    wait_until_fetched(page, CT_SLICES + 1)


def viewport_centre(page: Page) -> tuple[float, float]:
    box = page.locator("#viewport").bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def viewports(page: Page) -> list[dict[str, Any]]:
    """window.viewerState.viewports: what each shown viewport shows."""
    shown: list[dict[str, Any]] = page.evaluate("() => viewerState.viewports.map((v) => ({ ...v }))")
    return shown


def annotations(page: Page) -> list[dict[str, Any]]:
    """window.viewerState.annotations: every note of the study."""
    notes: list[dict[str, Any]] = page.evaluate("() => viewerState.annotations.map((n) => ({ ...n }))")
    return notes


def cell_point(page: Page, viewport: int, fx: float, fy: float) -> tuple[float, float]:
    """The page point at fractions (`fx`, `fy`) of viewport `viewport`'s box."""
    box = page.locator(f'.cell[data-viewport="{viewport}"]').bounding_box()
    assert box is not None
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def wait_until_fetched(page: Page, frames: int) -> None:
    """Until at least `frames` frames were requested and none is in flight."""
    page.wait_for_function("(n) => viewerState.inFlight === 0 && viewerState.frameRequests >= n", arg=frames)
