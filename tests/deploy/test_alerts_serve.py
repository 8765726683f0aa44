"""``pacs serve`` runs the alert sender: a queued alert reaches rsyslogd over TLS; Ctrl-C stops it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from pacs.core.config import load_settings
from pacs.core.context import CA_CERT, initialise, open_pacs
from pacs.ops.alerts import Alert, AlertQueue
from tests.conftest import _free_port, pacs_serve
from tests.ops.alert_peers import peer_pki, start_rsyslog

HOSTNAME = "pacs.clinic.example"


def test_serve_sends_queued_alerts_and_its_start_record_to_syslog_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = initialise(tmp_path / "data", ae_title="PACS", hostname=HOSTNAME, db_url="", user="t").data_dir
    peer = peer_pki(tmp_path / "pki")
    rsyslog = start_rsyslog(tmp_path / "rsyslog", peer, peer_name=HOSTNAME, client_ca=data / "tls" / CA_CERT)
    alerts = {
        "PACS_ALERTS_SYSLOG_HOST": "127.0.0.1",
        "PACS_ALERTS_SYSLOG_PORT": str(rsyslog.port),
        "PACS_ALERTS_SYSLOG_CA_FILE": str(peer.ca),
        "PACS_DICOM_WORKERS": "1",
    }
    ports = {"PACS_DICOM_PORT": str(_free_port()), "PACS_WEB_PORT": str(_free_port())}
    log = tmp_path / "serve.log"
    process = pacs_serve(data, log, **alerts, **ports)
    try:
        assert process.stdout is not None
        assert "DICOM TLS listening" in process.stdout.readline(), log.read_text()
        pacs = open_pacs(load_settings(data, {}))
        try:
            AlertQueue(pacs.database).put(Alert("disk", "disk below the watermark", "812 MiB free", key="t"))
        finally:
            pacs.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(
            "disk below the watermark" in x for x in rsyslog.lines()
        ):
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=120)
        rsyslog.stop()
    received = rsyslog.lines()
    assert code == 0, log.read_text()
    assert [line for line in received if "disk below the watermark" in line] == [
        "PACS-ALERT pacs.clinic.example 84 \ufeffdisk: disk below the watermark -- 812 MiB free"
    ]
    assert any('csd-code="110120"' in line for line in received if line.startswith("DICOM+RFC3881 "))
