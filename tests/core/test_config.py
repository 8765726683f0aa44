"""Settings: pacs.toml and PACS_<SECTION>_<KEY>, with defaults, checks and one-line errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from pacs.cli import main
from pacs.core.config import (
    CONFIG_NAME,
    SECTIONS,
    ConfigError,
    DicomSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    load_settings,
    render_config,
    with_overrides,
)


def _write(data_dir: Path, text: str) -> Path:
    path = data_dir / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def _defaults(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir.resolve())


def _write_defaults(data_dir: Path) -> Path:
    return _write(data_dir, render_config(_defaults(data_dir)))


def _config_error(data_dir: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir, environ or {})
    return str(caught.value)


# --- the rendered file and the defaults ------------------------------------------------------------


def test_rendered_config_holds_every_key_of_every_section_with_its_default(tmp_path: Path) -> None:
    document = tomllib.loads(render_config(_defaults(tmp_path)))
    assert set(document) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        defaults = cls()
        expected = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(cls)}
        assert document[name] == {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}


def test_every_rendered_key_is_preceded_by_a_comment(tmp_path: Path) -> None:
    lines = render_config(_defaults(tmp_path)).splitlines()
    keys = [i for i, line in enumerate(lines) if " = " in line and not line.startswith("#")]
    assert len(keys) == sum(len(dataclasses.fields(cls)) for cls in SECTIONS.values())
    for index in keys:
        assert lines[index - 1].startswith("# "), lines[index]
        assert len(lines[index - 1]) > len("# ")


def test_rendered_config_loads_back_to_the_defaults(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    assert load_settings(tmp_path, {}) == _defaults(tmp_path)


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    settings = _defaults(tmp_path)
    assert settings.dicom.ae_title == "PACS"
    assert settings.dicom.port == 2762
    assert settings.dicom.plaintext_port == 0
    assert settings.web.port == 8443
    assert settings.web.session_idle_minutes == 15


def test_empty_config_file_means_all_defaults(tmp_path: Path) -> None:
    _write(tmp_path, "")
    assert load_settings(tmp_path, {}) == _defaults(tmp_path)


def test_values_in_the_file_are_used(tmp_path: Path) -> None:
    _write(tmp_path, '[dicom]\nae_title = "ORTHO_PACS"\nport = 3000\n\n[web]\nbind = "127.0.0.1"\n')
    settings = load_settings(tmp_path, {})
    assert (settings.dicom.ae_title, settings.dicom.port) == ("ORTHO_PACS", 3000)
    assert settings.web.bind == "127.0.0.1"
    assert settings.dicom.max_pdu == DicomSettings().max_pdu


def test_text_values_with_quotes_backslashes_and_accents_round_trip(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        _defaults(tmp_path),
        server=ServerSettings(hostname='pacs "main" Zürich'),
        storage=StorageSettings(key_dir="C:\\keys\\clé"),
    )
    _write(tmp_path, render_config(settings))
    assert load_settings(tmp_path, {}) == settings


def test_text_values_beyond_the_basic_multilingual_plane_round_trip(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        _defaults(tmp_path), storage=StorageSettings(key_dir="/srv/keys-\U0001f511")
    )
    _write(tmp_path, render_config(settings))
    assert load_settings(tmp_path, {}) == settings


# --- the environment -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "section", "key", "expected"),
    [
        ("PACS_DICOM_PORT", "12762", "dicom", "port", 12762),
        ("PACS_WEB_PORT", "18443", "web", "port", 18443),
        ("PACS_STORAGE_MIN_FREE_MB", "5", "storage", "min_free_mb", 5),
        ("PACS_DICOM_AE_TITLE", "NIGHT_PACS", "dicom", "ae_title", "NIGHT_PACS"),
        ("PACS_DICOM_WORKERS", "3", "dicom", "workers", 3),
    ],
)
def test_environment_variable_overrides_the_default(
    tmp_path: Path, variable: str, value: str, section: str, key: str, expected: object
) -> None:
    _write_defaults(tmp_path)
    settings = load_settings(tmp_path, {variable: value})
    assert getattr(getattr(settings, section), key) == expected


def test_environment_variable_overrides_the_file(tmp_path: Path) -> None:
    _write(tmp_path, "[dicom]\nport = 3000\n")
    assert load_settings(tmp_path, {"PACS_DICOM_PORT": "12762"}).dicom.port == 12762


def test_pacs_data_is_ignored_by_the_loader(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    settings = load_settings(tmp_path, {"PACS_DATA": "/somewhere/else"})
    assert settings == _defaults(tmp_path)


def test_variables_without_the_pacs_prefix_are_ignored(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    assert load_settings(tmp_path, {"HOME": "/root", "DICOM_PORT": "1"}) == _defaults(tmp_path)


# --- bad settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("[dicom]\nprot = 2762\n", "[dicom] prot", id="unknown-key"),
        pytest.param("[dicom]\nport = 70000\n", "[dicom] port", id="port-out-of-range"),
        pytest.param("[web]\nport = 0\n", "[web] port", id="port-zero"),
        pytest.param('[dicom]\nport = "twenty"\n', "[dicom] port", id="port-not-a-number"),
        pytest.param("[dicom]\nport = true\n", "[dicom] port", id="port-boolean"),
        pytest.param('[dicom]\nae_title = "SEVENTEEN_CHARS_X"\n', "[dicom] ae_title", id="ae-title-17-chars"),
        pytest.param('[dicom]\nae_title = "PA\\\\CS"\n', "[dicom] ae_title", id="ae-title-backslash"),
        pytest.param('[dicom]\nae_title = "    "\n', "[dicom] ae_title", id="ae-title-spaces"),
        pytest.param('[dicom]\nbind = "localhost"\n', "[dicom] bind", id="bind-hostname"),
        pytest.param('[web]\nbind = "300.1.2.3"\n', "[web] bind", id="bind-bad-address"),
        pytest.param("[dicom]\nworkers = -1\n", "[dicom] workers", id="workers-negative"),
        pytest.param('[storage]\ndb_url = "sqlite:///index.db"\n', "[storage] db_url", id="db-url-sqlite"),
        pytest.param('[storage]\ndb_url = "mysql://root@db/pacs"\n', "[storage] db_url", id="db-url-mysql"),
        pytest.param("[storage]\nmin_free_mb = -1\n", "[storage] min_free_mb", id="negative-watermark"),
        pytest.param('[server]\nhostname = ["a", "b"]\n', "[server] hostname", id="hostname-not-text"),
        pytest.param(
            "[audit]\ncheckpoint_minutes = -5\n", "[audit] checkpoint_minutes", id="checkpoints-negative"
        ),
        pytest.param(
            '[audit]\nremote_syslog = "logs.example"\n', "[audit] remote_syslog", id="syslog-no-port"
        ),
        pytest.param('[audit]\nremote_syslog = ":6514"\n', "[audit] remote_syslog", id="syslog-no-host"),
        pytest.param(
            '[audit]\nremote_syslog = "logs:99999"\n', "[audit] remote_syslog", id="syslog-bad-port"
        ),
    ],
)
def test_bad_value_in_the_file_is_an_error_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = _write(tmp_path, text)
    message = _config_error(tmp_path)
    assert named in message
    assert str(path) in message


def test_audit_checkpoints_are_on_by_default_every_hour_to_dev_log(tmp_path: Path) -> None:
    audit = _defaults(tmp_path).audit
    assert (audit.checkpoint_minutes, audit.syslog_socket, audit.remote_syslog) == (60, "/dev/log", "")


def test_remote_syslog_host_and_port_are_accepted(tmp_path: Path) -> None:
    _write(tmp_path, '[audit]\nremote_syslog = "logs.clinic.example:6514"\n')
    assert load_settings(tmp_path, {}).audit.remote_syslog == "logs.clinic.example:6514"


def test_ae_title_of_16_characters_is_accepted(tmp_path: Path) -> None:
    _write(tmp_path, '[dicom]\nae_title = "SIXTEEN_CHARS_XY"\n')
    assert load_settings(tmp_path, {}).dicom.ae_title == "SIXTEEN_CHARS_XY"


@pytest.mark.parametrize("url", ["postgresql://pacs@db/pacs", "postgresql+psycopg://pacs@db/pacs"])
def test_postgresql_db_url_is_accepted(tmp_path: Path, url: str) -> None:
    _write(tmp_path, f'[storage]\ndb_url = "{url}"\n')
    assert load_settings(tmp_path, {}).storage.db_url == url


def test_unknown_section_is_an_error_naming_it(tmp_path: Path) -> None:
    _write(tmp_path, "[dicomm]\nport = 2762\n")
    assert "[dicomm]" in _config_error(tmp_path)


def test_key_outside_any_section_is_an_error_naming_it(tmp_path: Path) -> None:
    _write(tmp_path, "port = 2762\n")
    assert "port" in _config_error(tmp_path)


def test_unknown_environment_section_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    assert "PACS_DICOMX_PORT" in _config_error(tmp_path, {"PACS_DICOMX_PORT": "2762"})


def test_unknown_environment_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    assert "[dicom] prot" in _config_error(tmp_path, {"PACS_DICOM_PROT": "2762"})


@pytest.mark.parametrize(("value", "named"), [("70000", "[dicom] port"), ("notaport", "[dicom] port")])
def test_bad_environment_value_is_an_error_naming_the_key(tmp_path: Path, value: str, named: str) -> None:
    _write_defaults(tmp_path)
    assert named in _config_error(tmp_path, {"PACS_DICOM_PORT": value})


@pytest.mark.parametrize(
    ("variable", "value"), [("PACS_DICOM_PROT", "2762"), ("PACS_DICOM_PORT", "notaport")]
)
def test_environment_error_names_the_variable_and_not_the_file(
    tmp_path: Path, variable: str, value: str
) -> None:
    path = _write_defaults(tmp_path)
    message = _config_error(tmp_path, {variable: value})
    assert variable in message
    assert str(path) not in message


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[dicom\nport = 2762\n")
    assert str(path) in _config_error(tmp_path)


def test_missing_config_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    message = _config_error(tmp_path)
    assert str(tmp_path / CONFIG_NAME) in message
    assert "pacs init" in message


# --- the settings object -------------------------------------------------------------------------------


def test_settings_are_immutable(tmp_path: Path) -> None:
    _write_defaults(tmp_path)
    settings = load_settings(tmp_path, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.dicom.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.data_dir = Path("/elsewhere")  # type: ignore[misc]


def test_with_overrides_returns_a_checked_copy(tmp_path: Path) -> None:
    original = _defaults(tmp_path)
    changed = with_overrides(original, "dicom", port=11112)
    assert (changed.dicom.port, original.dicom.port) == (11112, 2762)
    with pytest.raises(ConfigError, match=r"\[dicom\] port"):
        with_overrides(original, "dicom", port=0)


def test_data_dir_is_resolved_and_paths_derive_from_it(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    _write_defaults(tmp_path / "real")
    settings = load_settings(tmp_path / "real" / ".." / "real", {})
    assert settings.data_dir == (tmp_path / "real").resolve()
    assert settings.key_dir == settings.data_dir / "keys"
    assert settings.blob_dir == settings.data_dir / "blobs"


# --- through the command line ------------------------------------------------------------------------------


def test_bad_environment_value_makes_the_cli_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_defaults(tmp_path)
    code = main(["verify", "--data", str(tmp_path)], environ={"PACS_DICOM_PORT": "notaport"})
    out, err = capsys.readouterr()
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pacs: error: ")
    assert "port" in lines[0]
    assert "Traceback" not in err
    assert out == ""


def test_max_frame_mb_defaults_to_256_and_must_be_positive(tmp_path: Path) -> None:
    _write(tmp_path, "")
    assert load_settings(tmp_path, {}).web.max_frame_mb == 256
    assert load_settings(tmp_path, {"PACS_WEB_MAX_FRAME_MB": "64"}).web.max_frame_mb == 64
    assert "[web] max_frame_mb" in _config_error(tmp_path, {"PACS_WEB_MAX_FRAME_MB": "0"})
