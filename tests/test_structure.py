"""The shape of the code: floors import only downwards, no import cycles, no module over 500 lines,
importing changes nothing, no test hooks."""

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


# The floors, lowest first: a module may import its own floor and those below it, never one above.
# Serving sits beside live and measure, on the core alone. The box (states, events and their sinks,
# `edgecnn run`) stands on live. `edgecnn` (root) is the version, on every floor.
RUNTIME_FLOORS = {"core", "live", "box", "measure", "serving"}
FLOOR_RULES = {  # floor -> the floors it must not import
    "runtime.core": {"runtime.live", "runtime.box", "runtime.measure", "runtime.serving", "export",
                     "training", "cli"},
    "runtime.live": {"runtime.box", "runtime.measure", "runtime.serving", "export", "training", "cli"},
    "runtime.box": {"runtime.measure", "runtime.serving", "export", "training", "cli"},
    "runtime.measure": {"runtime.serving", "export", "training", "cli"},
    "runtime.serving": {"runtime.live", "runtime.box", "runtime.measure", "export", "training", "cli"},
    "runtime": {"export", "training", "cli"},  # edgecnn.runtime's own __init__
    "export": {"cli"},
    "training": {"cli"},
    "cli": set(),
}
MAX_MODULE_LINES = 500


def floor(module: str) -> str:
    """Which floor a dotted module name is on: runtime.core | runtime.live | ... | export | training | cli."""
    parts = module.split(".")
    if parts[:2] == ["edgecnn", "runtime"]:
        return "runtime" if len(parts) == 2 else f"runtime.{parts[2]}"
    if parts[:2] == ["edgecnn", "export"]:
        return "export"
    if parts[:2] == ["edgecnn", "cli"] or module == "edgecnn.__main__":
        return "cli"
    return "root" if module == "edgecnn" else "training"


def layer_breaches(graph: dict[str, set[str]]) -> list[str]:
    """"a -> b (floor x must not import floor y)" for each import that goes up or across the floors."""
    return [f"{name} -> {other} ({floor(name)} must not import {floor(other)})"
            for name, others in sorted(graph.items()) for other in sorted(others)
            if floor(other) in FLOOR_RULES.get(floor(name), set())]


def test_every_module_is_on_a_known_floor() -> None:
    floors = {floor(name) for name in modules()}
    assert floors <= set(FLOOR_RULES) | {"root"}, floors
    runtime = {name.split(".")[2] for name in modules() if floor(name).startswith("runtime.")}
    assert runtime == RUNTIME_FLOORS, f"runtime/ has sub-packages {sorted(runtime)}: give each a floor"
    flat = [n for n in modules() if n.count(".") == 2 and n.startswith("edgecnn.runtime.") and
            not n.endswith(tuple(RUNTIME_FLOORS))]
    assert flat == [], f"runtime modules outside a floor: {flat}"


def test_floors_import_only_downwards() -> None:
    """runtime imports nothing from export, the training code or the CLI; the core nothing from live,
    measure or serving; export nothing from the CLI (type-only imports excepted)."""
    known = modules()
    graph = {name: imported(path, set(known)) - {name} for name, path in known.items()}
    assert layer_breaches(graph) == []


def test_the_layer_check_would_catch_a_breach() -> None:
    graph = {"edgecnn.runtime.core.engine": {"edgecnn.runtime.live.camera", "edgecnn.runtime.core.errors"},
             "edgecnn.runtime.live.camera": {"edgecnn.runtime.core.engine"},
             "edgecnn.export.bundle": {"edgecnn.cli"},
             "edgecnn.runtime.serving.serve": {"edgecnn.finetune"}}
    assert layer_breaches(graph) == [
        "edgecnn.export.bundle -> edgecnn.cli (export must not import cli)",
        "edgecnn.runtime.core.engine -> edgecnn.runtime.live.camera "
        "(runtime.core must not import runtime.live)",
        "edgecnn.runtime.serving.serve -> edgecnn.finetune (runtime.serving must not import training)"]


def test_no_production_module_is_over_500_lines() -> None:
    """A module that grows a second job (~300 lines) splits; 500 is where it must."""
    long = {str(path.relative_to(ROOT)): lines for path in modules().values()
            if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}


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
