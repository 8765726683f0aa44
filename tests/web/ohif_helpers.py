"""OHIF Viewer's published build served to Chromium by a test, pointed at a live archive with a token.

``scripts/dev-setup.sh`` fetches the static files of the npm package ``@ohif/app`` (its ``dist/``,
integrity pinned) into :data:`OHIF_DIR`. :func:`serve_ohif` serves them on a free port of
127.0.0.1 over HTTP (a secure context: Chromium treats loopback as trustworthy) the way OHIF's
own ``serve.json`` does, every unknown path answered with ``index.html`` for the single-page
app's routes, except ``/app-config.js``: :func:`app_config` writes it, one DICOMweb data source
on the archive's root and a one-line extension whose ``preRegistration`` gives OHIF's user
authentication service the ``Authorization: Bearer`` header (the route ``docs/CLIENTS.md``
describes; the token never appears in a URL).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

OHIF_VERSION = "3.13.2"  # the version scripts/dev-setup.sh fetches
OHIF_DIR = Path(os.environ.get("PACS_TEST_CACHE", Path.home() / ".cache" / "pacs-tests")) / (
    f"ohif-{OHIF_VERSION}"
)


def ohif_dist() -> Path:
    """The directory of OHIF's built files; the test fails (never skips) when it was not fetched."""
    if not (OHIF_DIR / "index.html").is_file():
        pytest.fail(f"OHIF's build is missing from {OHIF_DIR} (run scripts/dev-setup.sh)")
    return OHIF_DIR


def app_config(dicomweb_root: str, token: str) -> str:
    """OHIF's ``app-config.js``: the archive at `dicomweb_root` as its only data source, read with `token`."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "pacs",
        "configuration": {
            "friendlyName": "Test archive",
            "name": "pacs",
            "qidoRoot": dicomweb_root,
            "wadoRoot": dicomweb_root,
            "wadoUriRoot": dicomweb_root,
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
        },
    }
    header = json.dumps({"Authorization": f"Bearer {token}"})
    return f"""window.config = {{
  routerBasename: null,
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  investigationalUseDialog: {{ option: 'never' }},
  modes: [],
  extensions: [{{
    id: 'pacs-test-token',
    preRegistration({{ servicesManager }}) {{
      servicesManager.services.userAuthenticationService.setServiceImplementation({{
        getAuthorizationHeader: () => ({header}),
      }});
    }},
  }}],
  defaultDataSourceName: 'pacs',
  dataSources: [{json.dumps(source)}],
}};
"""


@dataclass
class OhifSite:
    """The static site: its origin (for ``[web] cors_origins``) and the ``app-config.js`` it answers."""

    origin: str
    config: str = ""
    requests: list[str] = field(default_factory=list)


def _handler(dist: Path, site: OhifSite) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        """OHIF's files from `dist`; ``index.html`` for the app's routes, ``app-config.js`` from `site`."""

        extensions_map: ClassVar[dict[str, str]] = {
            **SimpleHTTPRequestHandler.extensions_map,
            ".wasm": "application/wasm",
        }

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(dist), **kwargs)

        def do_GET(self) -> None:
            site.requests.append(self.path)
            path = self.path.split("?", 1)[0]
            if path == "/app-config.js":
                body = site.config.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if not Path(self.translate_path(path)).is_file():
                self.path = "/index.html"
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the requests are kept in `site` instead."""

    return Handler


@contextmanager
def serve_ohif() -> Iterator[OhifSite]:
    """OHIF's build on a free port of 127.0.0.1 until the block ends; set ``config`` before opening it."""
    site = OhifSite("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ohif_dist(), site))
    site.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
