"""Settings: one immutable object built from ``DIR/pacs.toml`` and ``PACS_<SECTION>_<KEY>``.

:func:`load_settings` is called once per process and its result passed to everything
that needs configuration. Every key has a default, a type and a check; an unknown
section or key, in the file or in the environment, is an error rather than a silent
no-op, so a typo cannot leave the archive in a state the admin did not intend.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pacs.core.config_alerts import AlertSettings
from pacs.core.config_passkeys import require_passkey_field
from pacs.core.config_routes import Route, parse_routes
from pacs.core.config_values import coerce, kind_of
from pacs.core.config_web_networks import allowed_networks_field, trusted_proxies_field
from storage.errors import PacsError

CONFIG_NAME = "pacs.toml"
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class ConfigError(PacsError, ValueError):
    """A setting is unknown or its value is invalid; the message names it."""


def _doc(text: str, check: Callable[[Any], str | None] | None = None) -> dict[str, Any]:
    return {"doc": text, "check": check}


def _port(allow_zero: bool) -> Callable[[int], str | None]:
    def check(value: int) -> str | None:
        low = 0 if allow_zero else 1
        return None if low <= value <= 65535 else f"must be a port number from {low} to 65535"

    return check


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than zero"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must not be negative"


def check_ae_title(value: str) -> str | None:
    """Why `value` is not a valid AE title (1-16 printable ASCII, no backslash), or None."""
    if not _AE_TITLE.match(value) or not value.strip():
        return "must be 1 to 16 printable ASCII characters, not all spaces, without a backslash"
    return None


def _address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "must be an IP address such as 0.0.0.0 or 127.0.0.1"
    return None


def _networks(value: tuple[str, ...]) -> str | None:
    for network in value:
        try:
            ipaddress.ip_network(network, strict=True)
        except ValueError:
            return f"{network!r} is not a CIDR network such as 192.168.10.0/24"
    return None


def _origins(value: tuple[str, ...]) -> str | None:
    for origin in value:
        if not _ORIGIN.match(origin):
            return f"{origin!r} is not an origin such as https://viewer.clinic.example (no path, no wildcard)"
    return None


def networks_of(values: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a checked list of CIDRs (``[web] token_networks``)."""
    return tuple(ipaddress.ip_network(value, strict=True) for value in values)


def _db_url(value: str) -> str | None:
    if value and not value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return "must be empty (embedded encrypted SQLite) or a postgresql:// URL"
    return None


def _cache_mb(default: int, what: str) -> Any:
    """A ``[web]`` cache budget: how many MiB of `what` the web process keeps at most (0: none)."""
    text = f"MiB of {what} the web viewer keeps in memory, at most; 0 keeps none."
    return field(default=default, metadata=_doc(text, _not_negative))


@dataclass(frozen=True)
class DicomSettings:
    """The DICOM listener."""

    ae_title: str = field(
        default="PACS", metadata=_doc("Our AE title; a called AE title must match it.", check_ae_title)
    )
    port: int = field(default=2762, metadata=_doc("DICOM over TLS (IANA dicom-tls).", _port(False)))
    bind: str = field(
        default="0.0.0.0", metadata=_doc("Address to listen on; every peer is authenticated.", _address)
    )
    plaintext_port: int = field(
        default=0,
        metadata=_doc("Unencrypted DICOM for enrolled legacy nodes only; 0 keeps it closed.", _port(True)),
    )
    max_associations: int = field(default=10, metadata=_doc("Concurrent associations in all.", _positive))
    workers: int = field(
        default=0,
        metadata=_doc("Processes serving DICOM, sharing the port; 0 = one per CPU core.", _not_negative),
    )
    max_pdu: int = field(default=262144, metadata=_doc("Largest PDU we receive, in bytes.", _positive))
    acse_timeout: int = field(
        default=30, metadata=_doc("Seconds to wait for association messages.", _positive)
    )
    handshake_timeout: int = field(
        default=10,
        metadata=_doc("Seconds a new connection has to finish TLS and ask for an association.", _positive),
    )
    max_pending_per_address: int = field(
        default=8,
        metadata=_doc("Connections one address may have open before its association is decided.", _positive),
    )
    dimse_timeout: int = field(default=60, metadata=_doc("Seconds to wait for DIMSE messages.", _positive))
    network_timeout: int = field(default=60, metadata=_doc("Seconds a silent connection is kept.", _positive))
    max_object_mb: int = field(default=4096, metadata=_doc("Largest object accepted, in MiB.", _positive))
    max_frame_mb: int = field(
        default=256,
        metadata=_doc("Largest frame a C-GET or C-MOVE decodes to transcode, in MiB.", _positive),
    )


@dataclass(frozen=True)
class WebSettings:
    """The HTTPS web viewer."""

    port: int = field(default=8443, metadata=_doc("HTTPS port of the web viewer.", _port(False)))
    bind: str = field(default="0.0.0.0", metadata=_doc("Address to listen on.", _address))
    session_idle_minutes: int = field(
        default=15, metadata=_doc("Idle minutes before a session ends.", _positive)
    )
    session_absolute_hours: int = field(
        default=12, metadata=_doc("Hours before any session ends.", _positive)
    )
    max_frame_mb: int = field(
        default=256,
        metadata=_doc(
            "Largest frame the web viewer decodes, in MiB (rows x columns x samples x bytes each);"
            " larger ones get an error (C-GET and C-MOVE: [dicom] max_frame_mb).",
            _positive,
        ),
    )
    object_cache_mb: int = _cache_mb(256, "parsed object headers")
    frame_cache_mb: int = _cache_mb(512, "decoded frames (and packed frame bodies)")
    metadata_cache_mb: int = _cache_mb(64, "instance DICOM JSON (WADO-RS metadata)")
    token_networks: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Networks (CIDRs) DICOMweb access tokens are accepted from; empty: any address.", _networks
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Origins (https://host[:port], exactly) whose pages may call DICOMweb with a token; empty: none.",
            _origins,
        ),
    )
    allowed_networks: tuple[str, ...] = allowed_networks_field()
    trusted_proxies: tuple[str, ...] = trusted_proxies_field()
    require_passkey: str = require_passkey_field()


@dataclass(frozen=True)
class StorageSettings:
    """The archive: index database, keys and disk watermark."""

    db_url: str = field(
        default="",
        metadata=_doc(
            "Empty: encrypted SQLite (SQLCipher) in the data directory; or a postgresql:// URL.", _db_url
        ),
    )
    key_dir: str = field(
        default="keys",
        metadata=_doc("Key directory, absolute or relative to the data directory; never the blob directory."),
    )
    min_free_mb: int = field(
        default=1024,
        metadata=_doc("Refuse new objects (DICOM 0xA700) below this much free disk, in MiB.", _not_negative),
    )
    max_header_kb: int = field(
        default=1024,
        metadata=_doc(
            "Refuse an object whose identifying header (groups up to 0028) is longer, in KiB.", _positive
        ),
    )
    sweep_seconds: int = field(
        default=300,
        metadata=_doc("Seconds between sweeps that index durable objects the index lacks.", _positive),
    )
    trash_days: int = field(
        default=30,
        metadata=_doc("Days a deleted study stays restorable in the trash before its purge.", _not_negative),
    )
    retention_years: int = field(
        default=0,
        metadata=_doc("Years a study is kept (by Study Date, else receipt); 0: forever.", _not_negative),
    )


def _host_port(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    if value and (not host or not port.isdigit() or not 0 < int(port) <= 65535):
        return "must be empty (off) or HOST:PORT, e.g. logs.clinic.example:6514"
    return None


@dataclass(frozen=True)
class AuditSettings:
    """Signed checkpoints of the audit trail, written where the service account cannot rewrite them."""

    checkpoint_minutes: int = field(
        default=60,
        metadata=_doc(
            "Minutes between signed audit checkpoints (also one at start and stop); 0 turns them off.",
            _not_negative,
        ),
    )
    syslog_socket: str = field(
        default="/dev/log",
        metadata=_doc("Local syslog socket (journald or rsyslog) for the checkpoints; empty: none."),
    )
    remote_syslog: str = field(
        default="",
        metadata=_doc("HOST:PORT of a syslog server taking the checkpoints over TLS (RFC 5425).", _host_port),
    )
    remote_syslog_ca: str = field(
        default="",
        metadata=_doc(
            "PEM file of the CA that issued the syslog server's certificate; empty: the archive's CA."
        ),
    )


@dataclass(frozen=True)
class ServerSettings:
    """Identity of this appliance."""

    hostname: str = field(default="localhost", metadata=_doc("Name or address in the server certificate."))


@dataclass(frozen=True)
class Settings:
    """All settings of one archive, rooted at `data_dir`."""

    data_dir: Path
    server: ServerSettings = ServerSettings()
    dicom: DicomSettings = DicomSettings()
    web: WebSettings = WebSettings()
    storage: StorageSettings = StorageSettings()
    audit: AuditSettings = AuditSettings()
    alerts: AlertSettings = field(default_factory=AlertSettings)  # pacs.core.config_alerts
    routes: tuple[Route, ...] = ()  # the [[route]] tables (pacs.core.config_routes)

    @property
    def key_dir(self) -> Path:
        """The key directory as an absolute path."""
        return (self.data_dir / self.storage.key_dir).resolve()

    @property
    def blob_dir(self) -> Path:
        """Where encrypted blobs live."""
        return self.data_dir / "blobs"

    @property
    def tls_dir(self) -> Path:
        """Where the CA and server certificates live (the private keys are in the key directory)."""
        return self.data_dir / "tls"

    @property
    def index_path(self) -> Path:
        """The embedded SQLCipher index file."""
        return self.data_dir / "index.db"


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "dicom": DicomSettings,
    "web": WebSettings,
    "storage": StorageSettings,
    "audit": AuditSettings,
    "alerts": AlertSettings,
}


def _section(name: str, cls: type, values: Mapping[str, Any], origins: Mapping[str, str]) -> Any:
    """Build section `name` from `values`; errors are prefixed with the key's origin."""
    known = {f.name: f for f in fields(cls)}
    parsed: dict[str, Any] = {}
    for key, raw in values.items():
        origin = origins.get(key, "settings")
        if key not in known:
            raise ConfigError(f"{origin}: unknown setting [{name}] {key} (known: {', '.join(known)})")
        spec = known[key]
        try:
            value = coerce(f"[{name}] {key}", kind_of(spec.type), raw)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        check = spec.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{origin}: [{name}] {key} = {value!r}: {problem}")
        parsed[key] = value
    return cls(**parsed)


def load_settings(data_dir: Path, environ: Mapping[str, str]) -> Settings:
    """Build the settings of the archive in `data_dir` from its pacs.toml and `environ`.

    Raises :class:`ConfigError` naming the file, section or variable at fault.
    """
    path = data_dir / CONFIG_NAME
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found: is {data_dir} a PACS data directory? (run 'pacs init')"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return parse_settings(content, data_dir, environ, origin=str(path))


def parse_settings(content: str, data_dir: Path, environ: Mapping[str, str], *, origin: str) -> Settings:
    """Build settings from the text of a pacs.toml (`origin` names it in errors) and `environ`."""
    try:
        document = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    routes = parse_routes(document.pop("route", None), origin, check_ae_title)
    for section, values in document.items():
        if section not in SECTIONS or not isinstance(values, dict):
            raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    merged: dict[str, dict[str, Any]] = {name: dict(document.get(name, {})) for name in SECTIONS}
    origins: dict[str, dict[str, str]] = {name: dict.fromkeys(merged[name], origin) for name in SECTIONS}
    for variable, value in environ.items():
        if not variable.startswith("PACS_") or variable == "PACS_DATA":
            continue
        section, _, key = variable[len("PACS_") :].lower().partition("_")
        if section not in SECTIONS or not key:
            raise ConfigError(f"environment variable {variable}: unknown setting")
        merged[section][key] = value
        origins[section][key] = f"environment variable {variable}"
    sections = {name: _section(name, cls, merged[name], origins[name]) for name, cls in SECTIONS.items()}
    return Settings(data_dir=data_dir.resolve(), routes=routes, **sections)


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple):
        return json.dumps(list(value), ensure_ascii=False)
    return str(value) if isinstance(value, int) else json.dumps(value, ensure_ascii=False)


def render_config(settings: Settings) -> str:
    """The text of a pacs.toml holding every setting of `settings`, each with its comment."""
    lines = [
        "# Mini-PACS settings. Every key can be overridden by PACS_<SECTION>_<KEY>,",
        "# e.g. PACS_DICOM_PORT=12762. Unknown keys are an error.",
    ]
    for name in SECTIONS:
        section = getattr(settings, name)
        lines += ["", f"[{name}]", f"# {type(section).__doc__}"]
        for spec in fields(section):
            lines.append(f"# {spec.metadata['doc']}")
            lines.append(f"{spec.name} = {_toml_value(getattr(section, spec.name))}")
    return "\n".join(lines) + "\n"


def with_overrides(settings: Settings, section: str, **values: Any) -> Settings:
    """A copy of `settings` with some keys of one section replaced and checked."""
    current = {f.name: getattr(getattr(settings, section), f.name) for f in fields(SECTIONS[section])}
    current.update(values)
    return replace(settings, **{section: _section(section, SECTIONS[section], current, {})})
