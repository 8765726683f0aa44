"""The tree itself: ruff is clean and dependencies between our packages point down."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("pacs", "storage", "webviewer")
# package -> packages (or modules) it must never import, and the exceptions it may
FORBIDDEN = {
    "storage": ("pacs", "webviewer"),
    "webviewer": ("pacs",),
}
ALLOWED = {"webviewer": ("pacs.core.accounts", "pacs.core.audit")}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _within(name: str, modules: tuple[str, ...]) -> bool:
    return any(name == module or name.startswith(module + ".") for module in modules)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upwards(package: str) -> None:
    offences = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / package).rglob("*.py")
        for name in _imports(path)
        if _within(name, FORBIDDEN[package]) and not _within(name, ALLOWED.get(package, ()))
    ]
    assert offences == []


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

    from storage.db import Base, Database

    database = Database(create_engine(f"sqlite:///{tmp_path / 'plain.db'}"))
    database.migrate()
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
