"""The package's layers, checked from its source: no import cycle, lower layers never import upper ones,
and the pure-Python layers never load torch or numpy.

Only module-level imports count (those that run when the module is imported, ``if``/``try`` blocks and class
bodies included): imports inside functions are the package's way of loading heavy layers late, and imports
under ``if TYPE_CHECKING:`` never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_clever

PACKAGE = "pytest_clever"
ROOT = Path(pytest_clever.__file__).parent

# Layer -> the layers it must not reach through module-level imports, directly or through any chain.
FORBIDDEN = {
    "core": ("stats", "runs", "_engine", "plugin"),
    "stats": ("runs", "_engine", "plugin"),
    "runs": ("_engine", "plugin"),
    "_engine": ("plugin", "runs"),
}

# What the pytest plugin loads in every run of a user's repository: neither torch nor numpy at import.
PURE_PYTHON = ("core", "runs", "plugin", "errors", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of ``body`` that run at import, descending into blocks but not into functions."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_statements(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                for child in children:
                    # except handlers and match cases hold their statements one level down
                    inner = child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child]
                    yield from _runtime_statements([s for s in inner if isinstance(s, ast.stmt)])


def _imports(module: str) -> set[str]:
    """The package modules that ``module`` imports at module level."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_statements(ast.parse(path.read_text(), str(path)).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                # "from pytest_clever.runs import files" imports the module runs.files; otherwise the name
                # comes from the module "source" itself.
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _chain(start: str, graph: dict[str, set[str]], bad: tuple[str, ...]) -> list[str] | None:
    """The shortest module-level import chain from ``start`` to a module of a layer in ``bad``, or None."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    for node in queue:
        if node != start and _layer(node) in bad:
            chain = [node]
            while (step := previous[chain[-1]]) is not None:
                chain.append(step)
            return chain[::-1]
        for target in sorted(graph[node]):
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return None


def test_the_walk_sees_the_package():
    # Guards the checks below against passing vacuously on a wrong path or a broken walk.
    for layer in ("core", "stats", "runs", "_engine", "plugin", "defences", "extras"):
        assert f"{PACKAGE}.{layer}" in MODULES
    assert f"{PACKAGE}.runs.storage" in GRAPH[f"{PACKAGE}.plugin.options"]
    assert f"{PACKAGE}.runs.files" in GRAPH[f"{PACKAGE}.runs.storage"]  # "from pytest_clever.runs import files"
    assert f"{PACKAGE}.extras.digits" in GRAPH[f"{PACKAGE}.toy"]


def test_the_walk_skips_function_bodies_and_type_checking_blocks(tmp_path):
    source = (
        "from typing import TYPE_CHECKING\n"
        "import pytest_clever.errors\n"
        "try:\n    from pytest_clever.core import norms\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    from pytest_clever.api import clever_score\n"
        "def f():\n    from pytest_clever.stats import evt\n"
        "class C:\n    from pytest_clever.runs.record import RunRecord\n"
    )
    path = tmp_path / "probe.py"
    path.write_text(source)
    MODULES["probe"] = path
    try:
        found = _imports("probe")
    finally:
        del MODULES["probe"]
    assert found == {f"{PACKAGE}.errors", f"{PACKAGE}.core.norms", f"{PACKAGE}.runs.record"}


def test_no_import_cycle_at_module_level():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_upper_ones(layer):
    offences = []
    for module in sorted(m for m in MODULES if _layer(m) == layer):
        chain = _chain(module, GRAPH, FORBIDDEN[layer])
        if chain:
            offences.append(" -> ".join(chain))
    assert not offences, f"{layer} must not import {', '.join(FORBIDDEN[layer])} at module level:\n" + "\n".join(
        offences
    )


def test_pure_python_layers_import_neither_torch_nor_numpy():
    """Every module of the pure-Python layers, imported in a fresh interpreter: torch and numpy stay unloaded.

    One interpreter for all of them is enough: a module that loads torch on its own also does so after the
    others, and each import is checked on its own, so the message names the first module that loaded it.
    """
    modules = sorted(m for m in MODULES if _layer(m) in PURE_PYTHON)
    assert len(modules) > len(PURE_PYTHON)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    heavy = sorted({'torch', 'numpy'} & set(sys.modules))\n"
        "    if heavy:\n"
        "        sys.exit(f'importing {name} loads {heavy}')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_lazy_public_names_match_all_and_the_type_checking_imports():
    """``pytest_clever.X`` is loaded on first use; ``__all__`` and the imports that type checkers read agree."""
    lazy = pytest_clever._LAZY
    assert sorted(pytest_clever.__all__) == sorted([*lazy, "__version__"])
    tree = ast.parse((ROOT / "__init__.py").read_text())
    typed = {
        alias.name: node.module.removeprefix(f"{PACKAGE}.")
        for block in tree.body
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert typed == lazy
