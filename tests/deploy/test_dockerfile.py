"""The container image: static checks of the Dockerfile and .dockerignore, and the real entry point.

Docker itself does not run here, so the Dockerfile is parsed and checked for what must hold
(stages, a fixed non-root user, separate volumes, a health check, no secrets); the entry point
script runs for real, with a stand-in ``pacs`` that records its calls, and its health check
runs against a real ``pacs serve``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacs.core.context import initialise
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
SECRET_WORDS = re.compile(r"PASSW|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments left out."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    parsed = []
    for line in logical:
        word, _, rest = line.partition(" ")
        parsed.append((word.upper(), rest.strip()))
    return parsed


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for word, rest in instructions():
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def _stages() -> list[str]:
    """The base image of each stage, with ARG defaults filled in."""
    defaults = _arg_defaults()
    images = []
    for word, rest in instructions():
        if word == "FROM":
            image = rest.split()[0]
            images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


# -- the Dockerfile -------------------------------------------------------------------------------------


def test_image_is_built_in_stages_on_python_3_11_slim_bookworm() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert stages[-1] == "python:3.11-slim-bookworm"
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert re.search(r"\bAS builder\b", froms[0], re.IGNORECASE)
    copies = [rest for word, rest in instructions() if word == "COPY"]
    assert any(rest.startswith("--from=builder /opt/pacs/venv ") for rest in copies)
    runtime = instructions()[[i for i, (word, _) in enumerate(instructions()) if word == "FROM"][-1] :]
    # No compiler in the runtime stage: build tools are installed in the builder only.
    assert not any(word == "RUN" and "build-essential" in rest for word, rest in runtime)


def test_image_runs_as_a_fixed_non_root_user() -> None:
    steps = instructions()
    start = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    users = [rest for word, rest in steps[start:] if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "a numeric uid, so that runAsNonRoot can check it"
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    last_run = max(i for i, (word, _) in enumerate(steps) if word == "RUN")
    entry = min(i for i, (word, _) in enumerate(steps) if word in ("ENTRYPOINT", "CMD"))
    assert last_run < last_user < entry
    runs = " ".join(rest for word, rest in steps[start:] if word == "RUN")
    assert f"--uid {user} " in runs and "--shell /usr/sbin/nologin" in runs


def test_image_keeps_data_and_keys_in_separate_volumes_and_exposes_both_ports() -> None:
    volumes = [json.loads(rest) for word, rest in instructions() if word == "VOLUME"]
    declared = {path for group in volumes for path in group}
    assert {"/var/lib/pacs", "/etc/pacs/keys"} <= declared
    exposed = {port for word, rest in instructions() if word == "EXPOSE" for port in rest.split()}
    assert {"2762", "8443"} <= exposed
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert re.search(r"install -d -m 0700 -o pacs -g pacs /var/lib/pacs /etc/pacs/keys", runs)


def test_image_has_a_healthcheck_run_by_the_entrypoint() -> None:
    (check,) = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    options, _, command = check.partition("CMD ")
    assert json.loads(command) == ["/usr/local/bin/docker-entrypoint.sh", "healthcheck"]
    assert "--interval=" in options and "--timeout=" in options
    (entrypoint,) = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["/usr/local/bin/docker-entrypoint.sh"]


def test_image_bakes_in_no_secrets_and_no_archive() -> None:
    for word, rest in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][\w.]*)=", rest) or [rest.split()[0]]
            for name in names:
                assert not SECRET_WORDS.search(name), f"{word} {name} looks like a secret"
        if word == "RUN":
            assert "pacs init" not in rest, "an archive made at build time would put its keys in the image"
        if word in ("COPY", "ADD"):
            assert not re.search(r"pacs-data|keys|\.key\b|\.pem\b", rest), rest


# -- .dockerignore ----------------------------------------------------------------------------------------


def _pattern(text: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression (Go filepath.Match plus ``**``)."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last matching pattern decides,
    and a pattern matching a parent directory matches everything in it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = _pattern(line.lstrip("!").strip("/"))
        if any(pattern.match(candidate) for candidate in candidates):
            verdict = not negated
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_codebase.py",
        "tests/data/make_series.py",
        "test-artifacts/serve.log",
        "pacs-data/pacs.toml",
        "pacs-data/keys/kek-0001.key",
        "pacs/__pycache__/cli.cpython-311.pyc",
        "storage/migrations/__pycache__/env.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "mini_pacs.egg-info/PKG-INFO",
        "build/lib/pacs/cli.py",
        "bench/archive_ingest.py",
        "install.sh",
    ],
)
def test_dockerignore_keeps_out_checkouts_virtualenvs_tests_archives_and_caches(path: str) -> None:
    assert ignored(path)


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    sources = []
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from="):
            sources += [part for part in shlex.split(rest)[:-1] if not part.startswith("--")]
    assert sources
    for source in sources:
        target = REPO / source
        assert target.exists(), source
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        for file in files:
            relative = str(file.relative_to(REPO))
            if "__pycache__" not in relative:
                assert not ignored(relative), relative


# -- the entry point ------------------------------------------------------------------------------------


@pytest.fixture
def stub_pacs(tmp_path: Path) -> tuple[Path, Path]:
    """A `pacs` that logs its arguments and, for `init`, leaves a pacs.toml and a key like the real one."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    stub = bin_dir / "pacs"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        'if [ "$1" = init ]; then\n'
        '    while [ "$#" -gt 0 ]; do\n'
        '        case "$1" in --data) data="$2" ;; --key-dir) keys="$2" ;; esac\n'
        "        shift\n"
        "    done\n"
        '    touch "$data/pacs.toml" "$keys/kek-0001.key"\n'
        '    echo "  first admin    admin, one-time password: Stub-Password-0"\n'
        "fi\n"
    )
    stub.chmod(0o755)
    return bin_dir, log


def _entrypoint(bin_dir: Path, data: Path, keys: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PACS_DATA": str(data),
        "PACS_STORAGE_KEY_DIR": str(keys),
        "PACS_SERVER_HOSTNAME": "pacs.example.test",
    }
    return subprocess.run(
        [str(ENTRYPOINT), *args], capture_output=True, text=True, timeout=60, env=env, cwd="/"
    )


def test_entrypoint_runs_pacs_init_only_when_pacs_toml_is_missing(
    tmp_path: Path, stub_pacs: tuple[Path, Path]
) -> None:
    bin_dir, log = stub_pacs
    data, keys = tmp_path / "data", tmp_path / "keys"
    data.mkdir()
    keys.mkdir()

    first = _entrypoint(bin_dir, data, keys)
    assert first.returncode == 0, first.stderr
    assert "one-time password: Stub-Password-0" in first.stdout  # what `docker logs` shows
    assert log.read_text().splitlines() == [
        f"init --data {data} --key-dir {keys} --hostname pacs.example.test",
        f"serve --data {data}",
    ]

    log.unlink()
    second = _entrypoint(bin_dir, data, keys, "serve")
    assert second.returncode == 0, second.stderr
    assert log.read_text().splitlines() == [f"serve --data {data}"]
    assert "one-time password" not in second.stdout


def test_entrypoint_refuses_an_archive_whose_key_volume_is_empty(
    tmp_path: Path, stub_pacs: tuple[Path, Path]
) -> None:
    bin_dir, log = stub_pacs
    data, keys = tmp_path / "data", tmp_path / "keys"
    data.mkdir()
    keys.mkdir()
    (data / "pacs.toml").write_text("")
    result = _entrypoint(bin_dir, data, keys)
    assert result.returncode != 0
    assert "key volume" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not log.exists()


def test_entrypoint_runs_other_commands_as_given(tmp_path: Path, stub_pacs: tuple[Path, Path]) -> None:
    bin_dir, log = stub_pacs
    data, keys = tmp_path / "data", tmp_path / "keys"
    result = _entrypoint(bin_dir, data, keys, "pacs", "user", "list")
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["user list"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served_archive(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real archive served by `pacs serve` on free ports; yields its data directory and web port."""
    data = tmp_path / "served"
    initialise(data, ae_title="PACS", hostname="pacs.example.test", db_url="", user="test")
    web_port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PACS_")} | {
        "PACS_DICOM_PORT": str(_free_port()),
        "PACS_DICOM_BIND": "127.0.0.1",
        "PACS_DICOM_WORKERS": "1",
        "PACS_WEB_PORT": str(web_port),
        "PACS_WEB_BIND": "127.0.0.1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pacs", "serve", "--data", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    try:
        yield data, web_port
    finally:
        process.terminate()
        process.wait(timeout=60)


def _healthcheck(data: Path, web_port: int) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PACS_DATA": str(data),
        "PACS_WEB_PORT": str(web_port),
        "PACS_WEB_BIND": "127.0.0.1",
    }
    return subprocess.run(
        [str(ENTRYPOINT), "healthcheck"], capture_output=True, text=True, timeout=30, env=env, cwd="/"
    )


def test_healthcheck_passes_against_the_running_archive_and_checks_its_ca(
    served_archive: tuple[Path, int], tmp_path: Path
) -> None:
    data, web_port = served_archive
    deadline = time.monotonic() + 30
    while (result := _healthcheck(data, web_port)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr

    # Another archive's CA does not vouch for this server: the handshake must fail.
    other = tmp_path / "other"
    initialise(other, ae_title="PACS", hostname="localhost", db_url="", user="test")
    mismatch = _healthcheck(other, web_port)
    assert mismatch.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in mismatch.stderr


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    data = tmp_path / "idle"
    initialise(data, ae_title="PACS", hostname="localhost", db_url="", user="test")
    result = _healthcheck(data, _free_port())
    assert result.returncode != 0
