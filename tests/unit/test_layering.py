"""The package ladder: each top-level package imports only packages below it (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. A package may import any package below it, never one above it or beside it.
LADDER = ["models", "backfill", "producers", "workers", "console", "demo"]
APART = {"sandbox": set(), "devservices": set()}  # imports nothing of the importer
ON_TOP = {"bench": set(LADDER) | {"sandbox", "devservices"}, "migrations": {"models", "backfill"}}
OURS = set(LADDER) | set(APART) | set(ON_TOP)
CELERY = {"celery", "kombu"}
MAX_LINES = 450


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "versions" not in p.parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def _allowed(package: str) -> set[str]:
    if package in LADDER:
        return set(LADDER[: LADDER.index(package)])
    return APART.get(package, ON_TOP.get(package, set()))


@pytest.mark.parametrize("package", LADDER + sorted(APART) + sorted(ON_TOP))
def test_a_package_imports_only_what_stands_below_it(package: str) -> None:
    allowed = _allowed(package) | {package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _modules(package)
        for name, line in _imports(path)
        if name in OURS and name not in allowed
    ]
    assert not wrong, wrong


def test_only_workers_import_celery() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in sorted(OURS - {"workers"})
        for path in _modules(package)
        for name, line in _imports(path)
        if name in CELERY
    ]
    assert not wrong, wrong


def test_every_package_is_on_the_ladder() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages == OURS, sorted(packages ^ OURS)


def test_modules_stay_small() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in sorted(OURS)
        for path in _modules(package)
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert not long, long
