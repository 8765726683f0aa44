"""Fixtures of the core tests: one certificate authority per module, PKI files issued by it, and accounts.

The accounts service gets a fake clock, so nothing sleeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacs.core.accounts import Accounts
from pacs.core.context import Context
from pacs.core.pki import (
    Issued,
    create_ca,
    issue_client_cert,
    issue_server_cert,
    write_certificate,
)
from tests.core.accounts_helpers import Clock
from tests.core.pki_helpers import PkiFiles, write_issued


@pytest.fixture(scope="module")
def ca() -> Issued:
    return create_ca()


@pytest.fixture
def pki_files(tmp_path: Path, ca: Issued) -> PkiFiles:
    server = issue_server_cert(ca, "localhost", extra_names=["127.0.0.1"])
    client = issue_client_cert(ca, "CT_SCANNER_1")
    ca_crt = tmp_path / "ca.crt"
    write_certificate(ca_crt, ca.cert)
    server_crt, server_key = write_issued(tmp_path, "server", server)
    client_crt, client_key = write_issued(tmp_path, "client", client)
    return PkiFiles(ca_crt, server_crt, server_key, client_crt, client_key)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(pacs: Context, clock: Clock) -> Accounts:
    return Accounts(pacs.database, pacs.keyring, audit=pacs.audit, now=clock)
