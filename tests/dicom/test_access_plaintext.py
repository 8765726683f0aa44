"""The legacy plaintext port: open only while a node is enrolled for plaintext, and only for that node."""

from __future__ import annotations

import time

from pacs.core.nodes import NodeRegistry
from tests.conftest import RunningDicom
from tests.dicom.access_helpers import (
    REFRESH_WAIT,
    _association_rejected,
    _echo,
    _plain_dcmtk,
    _port_open,
    _security_alert,
    _wait_for,
)

# -- the legacy plaintext port --------------------------------------------------------------------


def _plaintext_port(dicom: RunningDicom) -> int:
    return dicom.pacs.settings.dicom.plaintext_port


def _plaintext_listening(dicom: RunningDicom) -> bool:
    """Wait (up to a refresh and a bit) for the plaintext listener to open.

    Not probed with a bare TCP connection: one that sends nothing holds an association
    thread on the server until the ACSE timeout.
    """
    return bool(_wait_for(lambda: dicom.server.plaintext_open, timeout=REFRESH_WAIT))


def test_the_plaintext_port_is_closed_while_no_plaintext_node_is_enrolled(dicom: RunningDicom) -> None:
    dicom.enrol("CT1")
    time.sleep(2.5)  # past a refresh of the enrolment
    assert not dicom.server.plaintext_open
    assert not _port_open(_plaintext_port(dicom))


def test_the_plaintext_port_opens_for_a_legacy_node_and_accepts_it(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    result = _plain_dcmtk(dicom, "echoscu", "OLDCT", _plaintext_port(dicom))
    assert result.returncode == 0, result.stderr
    record = _security_alert(
        dicom, "association accepted", calling_ae_title="OLDCT", transport="plaintext", certificate_subject=""
    )
    assert record["outcome"] == 0


def test_the_plaintext_port_refuses_a_node_not_enrolled_for_plaintext(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    dicom.enrol("CT1", host="127.0.0.1")
    assert _plaintext_listening(dicom)
    result = _plain_dcmtk(dicom, "echoscu", "CT1", _plaintext_port(dicom), "-v")
    assert result.returncode != 0
    assert "Association Rejected" in result.stdout + result.stderr
    record = _association_rejected(
        dicom, calling_ae_title="CT1", transport="plaintext", certificate_subject=""
    )
    assert "not enrolled for plaintext" in record["details"]["decision"]


def test_the_plaintext_port_refuses_the_legacy_ae_title_from_another_address(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    assert not _echo(dicom, "OLDCT", None, port=_plaintext_port(dicom), bind="127.0.0.2")
    _association_rejected(dicom, source="127.0.0.2", calling_ae_title="OLDCT", transport="plaintext")


def test_the_plaintext_port_closes_when_the_last_legacy_node_is_removed(dicom: RunningDicom) -> None:
    dicom.enrol("OLDCT", host="127.0.0.1", plaintext=True)
    assert _plaintext_listening(dicom)
    assert _echo(dicom, "OLDCT", None, port=_plaintext_port(dicom))
    NodeRegistry(dicom.pacs.database).remove("OLDCT")
    assert _wait_for(lambda: not dicom.server.plaintext_open, timeout=REFRESH_WAIT)
    assert not _port_open(_plaintext_port(dicom))
