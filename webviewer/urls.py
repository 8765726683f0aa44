"""The absolute URLs the DICOMweb Studies Service hands out (RetrieveURL, BulkDataURI, Content-Location)."""

from __future__ import annotations

from flask import request

ROOT_PATH = "/dicomweb"
_DEFAULT_PORTS = {("https", "443"), ("http", "80")}


def service_root() -> str:
    """The absolute URL of the DICOMweb root for this request's client.

    The host is the one the client named. A client that named no port (dicomweb-client
    sends ``Host`` without it) gets the port it connected to, so the URLs lead back here.
    """
    host = request.host
    port = str(request.environ.get("SERVER_PORT", ""))
    if ":" not in host.rsplit("]", 1)[-1] and port and (request.scheme, port) not in _DEFAULT_PORTS:
        host = f"{host}:{port}"
    return f"{request.scheme}://{host}{ROOT_PATH}"
