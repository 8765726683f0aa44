"""The web viewer's HTTPS server: cheroot, a production WSGI server, with TLS 1.2+ only.

It serves :func:`webviewer.create_app` for one archive on ``[web] bind:port`` with the
server certificate made by ``pacs init`` and the BCP 195 cipher suites of the DICOM
listener. Flask's secret key (it signs the CSRF tokens) is derived from the key-encryption
key, so it survives restarts and is never written anywhere.
"""

from __future__ import annotations

import ssl
import threading
from datetime import timedelta

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from pacs.accounts import Accounts
from pacs.datadir import SERVER_CERT, SERVER_KEY, Pacs
from pacs.dicom.tls import BCP195_CIPHERS
from pacs.webadmin import PacsAdmin
from webviewer import WebConfig, create_app

THREADS = 16
_SECRET_PURPOSE = "web secret key v1"


def https_adapter(certificate: str, key: str) -> BuiltinSSLAdapter:
    """cheroot's TLS adapter, restricted to TLS 1.2+ and the BCP 195 suites."""
    adapter = BuiltinSSLAdapter(certificate, key)
    context: ssl.SSLContext = adapter.context
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return adapter


class WebServer:
    """The HTTPS web viewer of one archive: start it, let it run, stop it."""

    def __init__(self, pacs: Pacs) -> None:
        settings = pacs.settings
        config = WebConfig(
            secret_key=pacs.keyring.derive(_SECRET_PURPOSE, version=1),
            session_idle=timedelta(minutes=settings.web.session_idle_minutes),
            session_absolute=timedelta(hours=settings.web.session_absolute_hours),
        )
        self.app = create_app(
            config,
            archive=pacs.archive,
            accounts=Accounts(pacs.database, pacs.keyring),
            audit=pacs.audit,
            database=pacs.database,
            admin=PacsAdmin(pacs),
        )
        self._server = wsgi.Server(
            (settings.web.bind, settings.web.port),
            self.app,
            numthreads=THREADS,
            server_name=settings.server.hostname,
            timeout=30,
        )
        self._server.ssl_adapter = https_adapter(
            str(settings.tls_dir / SERVER_CERT), str(settings.key_dir / SERVER_KEY)
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="https", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        return int(self._server.bind_addr[1])

    def stop(self) -> None:
        """Stop accepting and finish the requests in flight."""
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
