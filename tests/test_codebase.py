"""The tree itself: ruff is clean and dependencies between our packages point down."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import layering

ROOT = Path(__file__).resolve().parent.parent
OURS = layering.OURS

# One import each layer must not make, as DESIGN.md's table forbids (the importer, the imported).
VIOLATIONS = {
    "storage imports nothing of ours": ("storage/blobs.py", "pacs.core.audit"),
    "pacs.core imports only storage": ("pacs/core/nodes.py", "pacs.ops.selfcheck"),
    "pacs.ops imports only pacs.core and storage": ("pacs/ops/backup.py", "webviewer.auth"),
    "webviewer imports only storage, pacs.core and pacs.ops": ("webviewer/auth.py", "pacs.dicom.policy"),
    "pacs.dicom does not import webviewer": ("pacs/dicom/server.py", "webviewer.viewer"),
    "only pacs.cli and pacs.serve import pacs.serve": ("pacs/ops/verify.py", "pacs.serve.https"),
}
# What each violating module is made of in the synthetic tree, besides its bad import.
SKELETON = (
    "storage/__init__.py", "storage/blobs.py", "pacs/__init__.py", "pacs/core/__init__.py",
    "pacs/core/audit.py", "pacs/core/nodes.py", "pacs/ops/__init__.py", "pacs/ops/backup.py",
    "pacs/ops/selfcheck.py", "pacs/ops/verify.py", "pacs/dicom/__init__.py", "pacs/dicom/policy.py",
    "pacs/dicom/server.py", "pacs/serve/__init__.py", "pacs/serve/https.py", "webviewer/__init__.py",
    "webviewer/auth.py", "webviewer/viewer.py",
)  # fmt: skip


def _tree(root: Path, imports: dict[str, str]) -> Path:
    """A synthetic tree of our packages in which each file of `imports` imports the module given."""
    for name in SKELETON:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f"import {imports[name]}\n" if name in imports else ""
        path.write_text(f'"""{name}."""\n{body}')
    return root


def test_the_layers_import_only_what_design_md_allows() -> None:
    assert layering.offences(ROOT) == []


def test_there_are_no_import_cycles() -> None:
    assert layering.cycles(ROOT) == []


@pytest.mark.parametrize("rule", sorted(VIOLATIONS))
def test_an_import_against_a_rule_is_caught(rule: str, tmp_path: Path) -> None:
    importer, imported = VIOLATIONS[rule]
    clean = _tree(tmp_path / "clean", {})
    broken = _tree(tmp_path / "broken", {importer: imported})
    assert layering.offences(clean) == []
    (offence,) = layering.offences(broken)
    assert offence.startswith(layering.module_name(broken, broken / importer) + " (")
    assert f"imports {imported} (" in offence


def test_an_import_inside_a_function_or_relative_counts(tmp_path: Path) -> None:
    root = _tree(tmp_path, {})
    (root / "storage/blobs.py").write_text('"""b."""\n\ndef f() -> None:\n    from pacs.core import audit\n')
    (root / "pacs/core/nodes.py").write_text('"""n."""\nfrom ..ops import selfcheck\n')
    assert layering.offences(root) == [
        "pacs.core.nodes (pacs.core) imports pacs.ops.selfcheck (pacs.ops)",
        "storage.blobs (storage) imports pacs.core.audit (pacs.core)",
    ]


def test_a_module_outside_every_layer_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {})
    (root / "pacs/stray.py").write_text('"""A module at the top of pacs."""\n')
    assert layering.offences(root) == ["pacs.stray is in no layer of DESIGN.md"]


def test_an_import_cycle_is_caught(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"pacs/ops/backup.py": "pacs.ops.verify", "pacs/ops/verify.py": "pacs.ops.backup"})
    assert layering.cycles(root) == [["pacs.ops.backup", "pacs.ops.verify"]]


def test_every_module_starts_with_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for package in OURS
        for path in (ROOT / package).rglob("*.py")
        if "versions" not in path.parts and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency"
    targets = [*OURS, "tests", "bench"]
    lint = subprocess.run([ruff, "check", *targets], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    style = subprocess.run([ruff, "format", "--check", *targets], cwd=ROOT, capture_output=True, text=True)
    assert style.returncode == 0, style.stdout


def test_migrations_match_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from storage.db import Database
    from storage.models import Base

    database = Database(create_engine(f"sqlite:///{tmp_path / 'plain.db'}"))
    database.migrate()
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_only_storage_durable_flushes_to_the_device() -> None:
    flushes = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in OURS
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "storage" / "durable.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr in {"fsync", "fdatasync", "sync"}
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    ]
    assert flushes == []


MODULE_LINES, FUNCTION_LINES = 400, 60
# Where a limit does not hold, and why.
LONGER = {
    "storage/migrations/versions/0001_initial.py:upgrade": "a migration is frozen history: the first schema",
}
SIZED = ("pacs", "storage", "webviewer", "bench")


def _sizes() -> Iterator[tuple[str, int, int]]:
    """(place, lines, limit) of every module and function of ours, tests excepted."""
    for package in SIZED:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            source = path.read_text(encoding="utf-8")
            yield name, len(source.splitlines()), MODULE_LINES
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield f"{name}:{node.name}", node.end_lineno - node.lineno + 1, FUNCTION_LINES  # type: ignore[operator]


def test_no_module_or_function_is_longer_than_the_limits_except_where_said_why() -> None:
    too_long = {place: lines for place, lines, limit in _sizes() if lines > limit and place not in LONGER}
    assert too_long == {}


def test_every_exception_to_the_limits_is_still_needed() -> None:
    sizes = {place: (lines, limit) for place, lines, limit in _sizes()}
    assert [place for place in LONGER if place not in sizes or sizes[place][0] <= sizes[place][1]] == []


CATALOGUE = {
    ROOT / "pacs/core" / name
    for name in ("events.py", "access_events.py", "care_events.py", "security_events.py")
}


def test_only_the_event_catalogue_builds_audit_records() -> None:
    built = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for package in OURS
        for path in (ROOT / package).rglob("*.py")
        if path not in CATALOGUE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) == "AuditEvent"
    ]
    assert built == []
