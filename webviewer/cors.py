"""CORS for the DICOMweb root, for the configured origins only (a viewer such as OHIF served elsewhere).

An origin is allowed when it equals one of ``[web] cors_origins`` exactly; none is by default.
Only paths under :data:`webviewer.apiauth.API_ROOT` take part. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``) is answered here, before any authentication, allowing
:data:`METHODS` and :data:`HEADERS`; other origins get no CORS header at all, so the browser
keeps the answer from them. Credentials are never allowed: clients send a token, not the cookie.
Every API response says ``Vary: Origin``.
"""

from __future__ import annotations

from flask import Flask, Response, request

from webviewer.apiauth import is_api_path

METHODS = "GET, POST"
HEADERS = "Authorization, Accept, Content-Type"
EXPOSED = "Content-Type, Content-Length, Content-Location, Location, WWW-Authenticate"
MAX_AGE = "600"


def init_app(app: Flask, origins: tuple[str, ...]) -> None:
    """Answer preflights and mark the responses of the DICOMweb root for `origins`."""
    allowed = frozenset(origins)

    def allowed_origin() -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin in allowed and is_api_path() else None

    def preflight() -> Response | None:
        if request.method != "OPTIONS" or not is_api_path():
            return None
        if "Access-Control-Request-Method" not in request.headers:
            return None
        response = Response(status=204)
        if allowed_origin() is not None:
            response.headers["Access-Control-Allow-Methods"] = METHODS
            response.headers["Access-Control-Allow-Headers"] = HEADERS
            response.headers["Access-Control-Max-Age"] = MAX_AGE
        return response

    def mark(response: Response) -> Response:
        if not is_api_path():
            return response
        response.vary.add("Origin")
        origin = allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
        return response

    app.before_request(preflight)
    app.after_request(mark)
