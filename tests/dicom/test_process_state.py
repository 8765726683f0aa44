"""Starting the servers and serving requests leaves the process's shared state as it was.

A library user (the tests, a bench, a second archive in one process) must not find
``tempfile.tempdir``, pynetdicom's module configuration or the default socket timeout
changed behind its back: each server takes its settings as arguments.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import pydicom
from pynetdicom import _config as pynetdicom_config

from tests.conftest import running_dicom
from tests.dicom.helpers import _association, _storage


def _shared_state() -> dict[str, Any]:
    options = {name: getattr(pynetdicom_config, name) for name in dir(pynetdicom_config) if name.isupper()}
    return {"tempdir": tempfile.tempdir, "socket_timeout": socket.getdefaulttimeout(), "pynetdicom": options}


def test_a_dicom_server_that_stores_an_object_changes_no_process_wide_setting(
    tmp_path: Path, ct_dir: Path
) -> None:
    before = _shared_state()
    with running_dicom(tmp_path) as dicom:
        with _association(dicom, dicom.enrol("MODALITY"), _storage()) as assoc:
            status = assoc.send_c_store(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0]))
        assert status.Status == 0x0000
        assert _shared_state() == before
    assert _shared_state() == before
