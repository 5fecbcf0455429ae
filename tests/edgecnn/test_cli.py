"""The command line: every command listed and exemplified, a fast torch-free start, Ctrl-C exits 130."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app

COMMANDS = ("finetune", "export", "predict", "eval", "bench", "camera", "info", "models")
runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    rows = [line.split() for line in result.output.splitlines() if line.startswith("│ ")]
    listed = {row[1] for row in rows if len(row) > 1}
    assert set(COMMANDS) <= listed, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert f"Example: edgecnn {command}" in result.output


def test_cli_starts_without_torch() -> None:
    """Help and import stay fast: torch (and timm) load only inside the commands that train or export."""
    code = ("import sys; from typer.testing import CliRunner; from edgecnn.cli import app; "
            "result = CliRunner().invoke(app, ['finetune', '--help']); assert result.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'nncf') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import edgecnn.finetune

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(edgecnn.finetune, "finetune", interrupted)
    result = runner.invoke(app, ["finetune", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 130 and "Traceback" not in result.output


def test_finetune_needs_data_or_resume() -> None:
    result = runner.invoke(app, ["finetune"])
    assert result.exit_code == 2 and "--resume RUN_DIR" in result.output


def test_finetune_numbers_its_run_folders(tiny_data, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --out: runs/finetune, then runs/finetune2 (never "not empty"); --exist-ok reuses runs/NAME."""
    monkeypatch.chdir(tmp_path)
    quick = ["--head-epochs", "1", "--workers", "0", "--batch-size", "16"]
    for expected in ("finetune", "finetune2"):
        result = runner.invoke(app, ["finetune", str(tiny_data), *quick])
        assert result.exit_code == 0, result.output
        assert (tmp_path / "runs" / expected / "best.pt").is_file()
    result = runner.invoke(app, ["finetune", str(tiny_data), "--name", "finetune", "--exist-ok", *quick])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["finetune", "finetune2"]
    result = runner.invoke(app, ["finetune", str(tiny_data), "--name", "x", "--out", "y"])
    assert result.exit_code == 2 and "not both" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_bool_type(command: str) -> None:
    """`--json <bool>` in --help invites `--json true`; on/off options show no type at all."""
    result = runner.invoke(app, [command, "--help"], terminal_width=160)
    assert result.exit_code == 0 and "<bool>" not in result.output, result.output


def test_top_level_help_shows_no_bool_type() -> None:
    result = runner.invoke(app, ["--help"], terminal_width=160)
    assert result.exit_code == 0 and "--help" in result.output and "<bool>" not in result.output


def test_finetune_imgsz_is_checked_and_kept_in_the_checkpoint(tiny_data, tmp_path) -> None:
    from edgecnn.checkpoint import load_checkpoint

    out = tmp_path / "run160"
    result = runner.invoke(app, ["finetune", str(tiny_data), "--out", str(out), "--imgsz", "160",
                                 "--head-epochs", "1", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "best.pt").preprocess.input_size == (160, 160)  # export takes it from here
    bad = tmp_path / "bad"
    result = runner.invoke(app, ["finetune", str(tiny_data), "--out", str(bad), "--imgsz", "250"])
    assert result.exit_code == 2 and "multiple of its stride 32" in result.output, result.output
    assert "e.g. 224 or 256" in result.output


_EXIT_PROBE = """
import atexit, sys, torch  # torch loaded: the teardown main() skips
import edgecnn.cli as cli
hook = sys.argv[1]
atexit.register(lambda: open(hook, "w").write("hook ran"))
sys.argv = ["edgecnn", *sys.argv[2:]]
cli.main()
"""


@pytest.mark.parametrize(("args", "status"), [(["models"], 0), (["info", "no-such-bundle"], 2)])
def test_main_exits_with_the_commands_status_after_the_exit_hooks(tmp_path, args: list[str],
                                                                  status: int) -> None:
    """main() ends the process without interpreter teardown: the status, the exit hooks and everything
    printed (to a pipe, so buffered) must still all be there."""
    hook = tmp_path / "hook.txt"
    done = subprocess.run([sys.executable, "-c", _EXIT_PROBE, str(hook), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == status, done.stderr
    assert hook.read_text() == "hook ran"
    assert ("efficientnet_lite0" in done.stdout) if status == 0 else ("error:" in done.stderr)
