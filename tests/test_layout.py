"""The package's shape, read from the code: no import cycle anywhere in pada_local (imports inside
functions count: they run too), stages that import shared ground but never each other, a core
that never imports the TUI, and modules small enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pada_local"
# The pipeline stages (stages/): each may use its own helpers (keywords, arith, balance) and the
# shared ground, never another stage.
STAGES = {f"pada_local.stages.{name}" for name in
          ("evaluate", "analyze", "generate", "quality", "train", "teachercheck")}
# Modules allowed past ~400 lines, and why.
LONG: dict[str, str] = {
    "pada_local.config": "one declarative schema: every field with the description `pada config --schema` "
                         "prints; splitting it would scatter the defaults",
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines under `if TYPE_CHECKING:`: imported for annotations only, never at run time."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every pada_local module `name` imports (module level or inside a function)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # `from . import loop` imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph[node]):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_import_cycle_in_the_package(graph: dict[str, set[str]]) -> None:
    # A package imports its own modules when they are imported (parent -> child edges are real),
    # so an __init__ that re-exports from a module which imports the package would show here.
    cycles = {tuple(c) for m in graph if (c := _cycle_from(m, graph)) is not None}
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in sorted(cycles))


def test_stages_never_import_each_other(graph: dict[str, set[str]]) -> None:
    crossing = {(a, b) for a in STAGES for b in graph[a] if b in STAGES}
    assert not crossing, f"stage imports another stage: {sorted(crossing)}"


def test_stages_know_nothing_of_the_orchestrator_the_ledger_or_the_cli(graph: dict[str, set[str]]) -> None:
    above = ("pada_local.run", "pada_local.ledger", "pada_local.cli", "pada_local.data")
    found = {(a, b) for a in graph if a.startswith("pada_local.stages")
             for b in graph[a] if b.startswith(above)}
    assert not found, f"a stage reaches up: {sorted(found)}"


def test_the_core_never_imports_the_tui() -> None:
    """Only `pada tui` opens the TUI, importing it when the command runs; nothing else in the
    core names it (or Textual)."""
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(x.split(".")[0] in ("tui", "textual") for x in names):
                assert name == "pada_local.cli" and id(node) not in top, f"{name} imports {names}"


def test_modules_stay_readable() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > 400 and name not in LONG}
    assert not too_long, f"modules over ~400 lines: {too_long}"
    assert sizes["pada_local.run.loop"] <= 250, "the orchestrator only sequences: keep it short"


def test_the_orchestrator_has_no_long_methods() -> None:
    tree = ast.parse((PACKAGE / "run" / "loop.py").read_text())
    long = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.end_lineno and f.end_lineno - f.lineno + 1 > 25}
    assert not long, f"orchestrator methods over ~25 lines: {long}"


def test_readme_layout_names_every_module() -> None:
    """README "Layout" is where a newcomer finds the file that owns a decision: every module
    (and every sub-package) is named there."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout"):]
    block = block[: block.index("```", block.index("```") + 3)]
    missing = []
    for name, path in _modules().items():
        if path.name in ("__init__.py", "__main__.py"):
            if path.name == "__init__.py" and name != "pada_local" and f"{path.parent.name}/" not in block:
                missing.append(f"{path.parent.name}/")
            continue
        if not re.search(rf"(?<![\w/]){re.escape(path.name)}\b", block):
            missing.append(str(path.relative_to(PACKAGE)))
    assert not missing, f"README Layout does not name: {missing}"
