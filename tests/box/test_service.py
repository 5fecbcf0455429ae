"""The service as a user installs it (issue 28 item 6): the README's install commands run for real (a unit
--unit refuses never reaches systemd's folder), --unit without the secrets the EnvironmentFile gives the
service, the folders its user must write, and a restarted run (`--append`, as the unit's ExecStart says)
keeping every record of the run before it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.box_files import colour_bundle

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOOLS = ROOT / "samples" / "photos" / "tools"
SECRETS = ("EDGECNN_TOKEN", "MQTT_URL")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def box_file(folder: Path, bundle: Path, extra: str = "") -> Path:
    """A box whose page and broker take secrets from the environment, with per-camera JSONL and events."""
    path = folder / "box.toml"
    path.write_text(f'model = "{bundle}"\ndevice = "cpu"\nheadless = true\njsonl = "out/{{camera}}.jsonl"\n'
                    f'events = "events/events.jsonl"\n{extra}'
                    f'[[camera]]\nsource = "{TOOLS}"\nname = "slides"\n')
    return path


SECRET_TABLES = '[page]\nserve = "0.0.0.0:0"\ntoken_env = "EDGECNN_TOKEN"\n[sinks]\nmqtt_env = "MQTT_URL"\n'


def edgecnn(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in SECRETS}  # the installer's shell
    environment.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], env=environment, text=True,
                          capture_output=True, timeout=120, cwd=cwd)


def verify(unit: Path) -> str:
    """systemd-analyze verify's complaints about a unit file ("" when none)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 and not done.stdout + done.stderr else done.stdout + done.stderr


def test_unit_needs_no_secret_in_the_shell_but_run_and_check_still_do(bundle: Path, tmp_path: Path) -> None:
    box = box_file(tmp_path, bundle, SECRET_TABLES)
    done = edgecnn("run", str(box), "--unit", "--user", "root")
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "must set" in line]
    assert said == ["/etc/edgecnn/box.env must set EDGECNN_TOKEN, MQTT_URL (VARIABLE=value lines, mode 600): "
                    "the service reads its secrets from there"]
    (tmp_path / "edgecnn-box.service").write_text(done.stdout)
    assert "EnvironmentFile=-/etc/edgecnn/box.env" in done.stdout
    assert verify(tmp_path / "edgecnn-box.service") == ""
    for args in (("--check",), ()):  # what runs, in the shell it runs in, still needs its secrets
        refused = edgecnn("run", str(box), *args)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines() == [
            f"error: {box} line 8: token_env: the environment variable EDGECNN_TOKEN is not set; export it "
            "(a service reads it from its EnvironmentFile)"]
    # a wrong form is still refused by --unit: the URL the variable will hold is not checked, its key is
    broken = box.read_text().replace('mqtt_env = "MQTT_URL"', 'mqtt_env = "MQTT URL"')
    box.write_text(broken)
    done = edgecnn("run", str(box), "--unit")
    assert done.returncode == 2 and done.stdout == ""
    assert "mqtt_env: give the name of an environment variable" in done.stderr


@pytest.mark.parametrize(("serve", "needs"), [("0.0.0.0:0", True), ("127.0.0.1:0", False)])
def test_unit_leaves_camera_s_token_variable_to_the_environment_file(bundle: Path, tmp_path: Path,
                                                                    serve: str, needs: bool) -> None:
    """A page other machines reach, with no token_env: `edgecnn camera` reads EDGECNN_TOKEN, so the
    service's EnvironmentFile must set it; a loopback page needs none."""
    box = box_file(tmp_path, bundle, f'[page]\nserve = "{serve}"\n')
    done = edgecnn("run", str(box), "--unit")
    assert done.returncode == 0, done.stderr
    said = "/etc/edgecnn/box.env must set EDGECNN_TOKEN (VARIABLE=value lines"
    assert (said in done.stderr) is needs
    refused = edgecnn("run", str(box), "--check")
    assert (refused.returncode == 2 and "give --token TOKEN" in refused.stderr) is needs


def test_unit_and_check_say_which_folders_the_service_writes(bundle: Path, tmp_path: Path) -> None:
    box = box_file(tmp_path, bundle, 'review = "queue"\nclips = "clips"\nsave = "videos/box.mp4"\n')
    done = edgecnn("run", str(box), "--unit", "--user", "cams")
    assert done.returncode == 0, done.stderr
    folders = " ".join(str(tmp_path / name) for name in ("events", "out", "videos", "queue", "clips"))
    said = done.stderr.splitlines()
    assert said[0] == f"the service writes in {folders}: make them cams's: sudo install -d -o cams -g cams " \
        f"{folders}"
    assert said[1].startswith(f"warning: save = {tmp_path / 'videos' / 'box.mp4'}: a restart refuses")
    assert "writes in" not in done.stdout and done.stdout.startswith("[Unit]")
    checked = edgecnn("run", str(box), "--check")
    assert checked.returncode == 0 and f"writes in: {folders}" in checked.stdout.splitlines()


def install_block() -> str:
    """The README's install commands (the block after "As a systemd service")."""
    section = README[README.index("As a systemd service"):]
    return section[section.index("```\n") + 4:].split("```")[0]


def test_readme_install_never_leaves_systemd_an_empty_unit(bundle: Path, tmp_path: Path) -> None:
    """The README's commands as a shell runs them (sudo and /etc pointed at a scratch folder): a config
    --unit refuses writes no unit where systemd reads them; a good one installs the unit --unit prints."""
    systemd, etc = tmp_path / "systemd", tmp_path / "etc"
    systemd.mkdir()
    lines = [line for line in install_block().splitlines() if "edgecnn run" in line or "install " in line]
    assert lines and not any("| sudo tee" in line for line in lines)
    script = "\n".join(lines).replace("sudo ", "").replace("/etc/systemd/system/", f"{systemd}/").replace(
        "/etc/edgecnn/", f"{etc}/").replace("-o edgecnn -g edgecnn ", "")
    script = script.replace("edgecnn run", f"{sys.executable} -m edgecnn run")
    etc.mkdir()
    box_file(etc, bundle).write_text(box_file(etc, bundle).read_text() + "top_kk = 2\n")  # refused
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    failed = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert "top_kk: is not a known key" in failed.stderr  # each line as a pasting user runs it: no `set -e`
    assert list(systemd.iterdir()) == []  # `| sudo tee` left a 0-byte edgecnn.service here
    readme_box = box_file(etc, bundle).read_text().replace("out/", "runs/")  # the README's box: runs/
    (etc / "box.toml").write_text(readme_box.replace('events = "events/events.jsonl"\n', ""))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    installed = systemd / "edgecnn.service"
    assert installed.read_text().startswith("[Unit]") and f"run {etc / 'box.toml'} --append" in \
        installed.read_text()
    assert (etc / "runs").is_dir()  # the README's install -d step made it, the one --unit says
    assert f"sudo install -d -o edgecnn -g edgecnn {etc / 'runs'}" in done.stderr
    assert verify(installed) == ""


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_restarted_run_appends_to_its_jsonl_and_events(bundle: Path, tmp_path: Path) -> None:
    """Two starts of one box, as Restart=always makes them: the second keeps every record of the first
    and adds its own, each line whole; without --append (or append = true) the start is refused."""
    box = box_file(tmp_path, bundle)
    first = edgecnn("run", str(box), "--append")
    assert first.returncode == 0, first.stderr
    jsonl, events = tmp_path / "out" / "slides.jsonl", tmp_path / "events" / "events.jsonl"
    once = {path: records(path) for path in (jsonl, events)}
    photos = len(list(TOOLS.iterdir()))
    assert len(once[jsonl]) == photos and len(once[events]) >= 1
    refused = edgecnn("run", str(box))
    assert refused.returncode == 2 and "append = true" in refused.stderr and "Traceback" not in refused.stderr
    with events.open("a") as file:  # a start killed mid-line (SIGKILL by the watchdog) left half a record
        file.write('{"camera": "slides", "cut sho')
    box.write_text(box.read_text().replace("headless = true\n", "headless = true\nappend = true\n"))
    second = edgecnn("run", str(box))
    assert second.returncode == 0, second.stderr
    assert records(jsonl)[:photos] == once[jsonl] and len(records(jsonl)) == 2 * photos
    assert [r["frame"] for r in records(jsonl)] == 2 * [r["frame"] for r in once[jsonl]]
    lines = events.read_text().splitlines()
    assert lines[len(once[events])] == '{"camera": "slides", "cut sho'  # kept as it was, on its own line
    kept = [json.loads(line) for n, line in enumerate(lines) if n != len(once[events])]
    assert kept[:len(once[events])] == once[events] and len(kept) == 2 * len(once[events])
    assert [e["state"] for e in kept[len(once[events]):]] == [e["state"] for e in once[events]]


def test_camera_append_adds_to_one_jsonl_file(bundle: Path, tmp_path: Path) -> None:
    """`edgecnn camera --jsonl FILE --append`, twice: the one-camera shortcut keeps both runs too."""
    jsonl = tmp_path / "frames.jsonl"
    args = ("camera", str(bundle), "--source", str(TOOLS), "--headless", "--device", "cpu", "--jsonl",
            str(jsonl))
    assert edgecnn(*args, "--append").returncode == 0 and edgecnn(*args, "--append").returncode == 0
    photos = len(list(TOOLS.iterdir()))
    assert [r["frame"] for r in records(jsonl)] == 2 * list(range(photos))
    refused = edgecnn(*args)
    assert refused.returncode == 2 and "pass --force to overwrite it, --append to add to it" in refused.stderr


def test_check_warns_for_a_broker_or_webhook_it_cannot_reach(bundle: Path, tmp_path: Path) -> None:
    """Exit 0 (the run would retry them), one warning line for each that takes no connection in 2 s: a
    broker whose listen queue is full (it never answers) and a webhook port that refuses; the webhook that
    listens gets no line."""
    import socket
    import time

    listening, stalled, closed = socket.socket(), socket.socket(), socket.socket()
    for sock in (listening, stalled, closed):
        sock.bind(("127.0.0.1", 0))
    listening.listen()
    stalled.listen(0)  # its queue filled below: a new connection's SYN goes unanswered
    up, silent, down = (sock.getsockname()[1] for sock in (listening, stalled, closed))  # closed: refuses
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", silent))
    time.sleep(0.2)
    try:
        box = box_file(tmp_path, bundle, f'[sinks]\nmqtt = "mqtt://127.0.0.1:{silent}/cams"\nwebhook = '
                                         f'["http://127.0.0.1:{up}/hook", "http://127.0.0.1:{down}/hook"]\n')
        done = edgecnn("run", str(box), "--check")
    finally:
        for sock in (listening, stalled, closed, *fillers):
            sock.close()
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert warned == [
        f"warning: mqtt broker mqtt://127.0.0.1:{silent}/cams: cannot connect to 127.0.0.1:{silent} within "
        "2 s (no answer); the run will keep trying: check the address and that it is up",
        f"warning: webhook http://127.0.0.1:{down}/hook: cannot connect to 127.0.0.1:{down} within 2 s "
        "(Connection refused); the run will keep trying: check the address and that it is up"]
