"""The shape of the code: data flows one way (no import cycles), importing changes nothing, no test hooks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"edgecnn": "edgecnn", "export": "edgecnn.export", "runtime": "edgecnn.runtime"}


def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the three packages."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere (inside functions too), except `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                 for statement in block.body for node in ast.walk(statement)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from edgecnn.runtime.core import devices` imports a module
                submodule = f"{node.module}.{alias.name}"
                found |= {submodule} if submodule in known else {node.module} & known
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imported(path, set(known)) - {name} for name, path in known.items()}
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the walk sees the code
    assert cycles(graph) == []


def test_the_cycle_check_would_catch_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    bench = "edgecnn.runtime.measure.bench"
    source = f"def f():\n    from {bench} import x\nif TYPE_CHECKING:\n    import edgecnn.cli\n"
    path = ROOT / "tests" / ".structure-probe.py"
    try:
        path.write_text(source)
        assert imported(path, {bench, "edgecnn.cli"}) == {bench}
    finally:
        path.unlink()


def test_importing_sets_no_environment_variables() -> None:
    """Config travels with the artifact, not in globals: importing any module leaves os.environ alone."""
    names = sorted(n for n in modules() if not n.endswith("__main__"))
    code = ("import importlib, os, sys\nbefore = dict(os.environ)\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_no_test_hooks_in_production_code() -> None:
    hooks = [f"{path.relative_to(ROOT)}" for path in modules().values()
             if "EDGECNN_TEST" in path.read_text(encoding="utf-8")]
    assert hooks == []


def function_lengths() -> dict[str, int]:
    """Lines from the first statement of the body to the end, per function (a Typer signature with its
    options does not count; the docstring does)."""
    lengths = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{name}.{node.name}:{node.lineno}"] = node.end_lineno - node.body[0].lineno + 1
    return lengths


def test_functions_stay_short() -> None:
    import statistics

    lengths = function_lengths()
    assert [f"{name} ({lines} lines)" for name, lines in lengths.items() if lines > 40] == []
    assert statistics.median(lengths.values()) <= 10
