"""The README a newcomer follows: set-up first, the venv said, every tour command and `--help` example parses.

The tour's output blocks are written by docs/tour.py from a real run (`make readme`); here every
command is parsed by the real CLI (options, types, existing paths) without running it, so a renamed
option or a changed argument breaks a test, not the tour.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
import typer

from edgecnn.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
spec = importlib.util.spec_from_file_location("tour", ROOT / "docs" / "tour.py")
tour = importlib.util.module_from_spec(spec)
sys.modules["tour"] = tour  # dataclasses look their module up there
spec.loader.exec_module(tour)
STEPS = tour.steps(README)
COMMAND = typer.main.get_command(app)


def parse(line: str) -> None:
    """Parse `edgecnn COMMAND ...` as the CLI would (options, types, paths), stopping before it runs."""
    words = shlex.split(line)
    assert words[0] == "edgecnn" and words[1] in COMMAND.commands, f"no such command: {line}"
    COMMAND.commands[words[1]].make_context(words[1], words[2:])


def test_first_commands_are_make_demo_and_make_test() -> None:
    first_block = README[README.index("```bash") + len("```bash"):].split("```")[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.split("#")[0].strip()]
    assert commands[:2] == ["make demo", "make test"]


def test_the_venv_is_activated_before_the_first_edgecnn_command() -> None:
    assert README.index("source .venv/bin/activate") < README.index("$ edgecnn")


def test_the_tour_has_steps_with_outputs() -> None:
    assert len(STEPS) >= 8 and all(step.command.startswith("edgecnn ") for step in STEPS)
    assert all(step.output.strip() for step in STEPS), "run `make readme` to fill the output blocks"


@pytest.mark.parametrize("step", STEPS, ids=[step.command[:60] for step in STEPS])
def test_tour_command_parses(step: tour.Step, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    parse(step.command)


def test_tour_never_writes_where_make_demo_did() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = makefile.split("\ndemo:")[1].split("\n\n")[0]
    demo_outputs = set(re.findall(r"(?:runs|bundles)/[\w-]+", demo))
    assert {"runs/demo", "bundles/demo"} <= demo_outputs
    for step in STEPS:
        for written in re.findall(r"--(?:out|name|save|jsonl)[ =](\S+)", step.command):
            places = {"/".join(Path(written).parts[:2]), f"runs/{written}", f"bundles/{written}"}
            assert not places & demo_outputs, step.command


@pytest.mark.parametrize("name", sorted(COMMAND.commands))
def test_help_example_parses(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    epilog = COMMAND.commands[name].epilog or ""
    found = re.search(r"Example: (edgecnn [^\n]+)", epilog)
    assert found, f"`edgecnn {name} --help` shows no example"
    monkeypatch.chdir(ROOT)
    try:
        parse(found.group(1))
    except typer.BadParameter as exc:  # a path the example's earlier steps create (bundles/demo...)
        assert "does not exist" in str(exc), exc


def test_the_python_snippet_runs_on_a_real_bundle(imagenet_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The README's "From Python" example, as written, with its bundle path pointed at a real export."""
    section = README[README.index("## From Python"):]
    snippet = section[section.index("```python") + len("```python"):].split("```")[0]
    assert 'load("bundles/demo")' in snippet and snippet.count("\n") <= 14  # short enough to copy
    monkeypatch.chdir(ROOT)
    exec(compile(snippet.replace("bundles/demo", str(imagenet_bundle)), "README.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and " on " in printed[0] and "tench" in printed[0]  # ImageNet class 0
    assert printed[1].split()[-1] in ("known", "unknown") and float(printed[1].split()[-2]) > 0
    assert printed[2].startswith("[(") and printed[2].count("(") == 3
