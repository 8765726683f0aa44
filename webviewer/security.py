"""Security headers on every response, and no caching of anything but static files.

The CSP allows scripts, styles and images from this origin only (QR codes are ``data:``
images), with no inline script, no ``eval`` and no framing. One kind of response may be
framed, by this origin only: an embedded document (an encapsulated PDF shown in a page of
the viewer, :func:`framable_by_self`), sandboxed and with nothing else allowed. Every page
may show PHI, so every response except ``/static/`` is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# An embedded document loads nothing and runs nothing of its own (Chromium's PDF viewer still shows it).
EMBEDDED_CSP = "; ".join(
    ["default-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'self'", "sandbox"]
)
HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def framable_by_self(response: Response) -> Response:
    """Let pages of this origin frame `response` (an embedded document) under :data:`EMBEDDED_CSP`.

    :func:`add_headers` keeps a CSP and X-Frame-Options a view has set; every other header is the same.
    """
    response.headers["Content-Security-Policy"] = EMBEDDED_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


def add_headers(response: Response) -> Response:
    """Set the security headers, and ``no-store`` on everything that is not a static file."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    """Register the headers on `app`."""
    app.after_request(add_headers)
