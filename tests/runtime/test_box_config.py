"""`edgecnn run --check` on broken box files: one line naming the file, the key and its line, exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.cli import app
from tests.runtime.box_files import colour_bundle

ROOT = Path(__file__).resolve().parents[2]
CUP = ROOT / "samples" / "videos" / "cup.mp4"
GOOD_CAMERA = f'[[camera]]\nsource = "{CUP}"\n'


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_bundle(tmp_path_factory)


def check(folder: Path, text: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    path = folder / "box.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["run", str(path), "--check"], env=env)
    return result.exit_code, result.output


BROKEN = [  # (box file after `model = ...`, its line that is wrong, words the message has)
    ("top_kk = 3\n" + GOOD_CAMERA, 2, "did you mean 'top_k'"),
    (GOOD_CAMERA + "crop = [0, 0, 0.5, 1]\n", 4, "did you mean 'region'"),
    ('top_k = "3"\n' + GOOD_CAMERA, 2, "give a whole number"),
    ('headless = "yes"\n' + GOOD_CAMERA, 2, "give true or false"),
    ("vid_stride = 0\n" + GOOD_CAMERA, 2, "out of range"),
    ("reconnect_timeout = -1.0\n" + GOOD_CAMERA, 2, "out of range"),
    ("collect_max = 0\n" + GOOD_CAMERA, 2, "out of range"),
    (GOOD_CAMERA + "region = [0, 0, 0.5]\n", 4, "is not a region"),
    (GOOD_CAMERA + "region = [0.5, 0, 0.8, 1]\n", 4, "reaches past the frame"),
    (GOOD_CAMERA + "region = [0.5, 0, 100, 200]\n", 4, "mixes pixels and fractions"),
    (GOOD_CAMERA + 'region = { x = 0, y = 0, width = 10, h = 10 }\n', 4, "is not a region"),
    (GOOD_CAMERA + 'name = "door"\n' + GOOD_CAMERA + 'name = "door"\n', 7, "each camera needs its own name"),
    (GOOD_CAMERA + 'name = "Front Door"\n', 4, "is not a camera name"),
    ('[page]\nserve = "8080"\ntoken = "hunter2"\n' + GOOD_CAMERA, 4, "set token_env"),
    ('[page]\nserve = "8080"\ntoken_env = "EDGECNN_BOX_NOT_SET"\n' + GOOD_CAMERA, 4,
     "EDGECNN_BOX_NOT_SET is not set"),
    ('[[camera]]\nsource = "rtsp://admin:pw@cam1/live"\n', 3, "has a password in it"),
    ('device = "cpu"\n', 2, "no camera"),
    ('[[camera]]\nname = "door"\n', 2, "has no source"),
    ('[[camera]]\nsource = "nowhere.mp4"\n', 3, "does not exist"),
    (GOOD_CAMERA + "min_prob = 0.3\n" + GOOD_CAMERA + "min_prob = 0.5\n", 7, "all cameras of a box share it"),
    ('serve = "8080"\n' + GOOD_CAMERA, 2, "belongs in the [page] table"),
    (GOOD_CAMERA + 'jsonl = "a.jsonl"\n' + GOOD_CAMERA + 'jsonl = "b.jsonl"\n', 7, "runs/{camera}.jsonl"),
    ("top_k = \n" + GOOD_CAMERA, 2, "not valid TOML"),
]


@pytest.mark.parametrize(("body", "line", "words"), BROKEN, ids=[f"{n}" for n in range(len(BROKEN))])
def test_a_broken_box_file_is_one_line_with_its_line_number(bundle: Path, tmp_path: Path, body: str,
                                                            line: int, words: str) -> None:
    code, output = check(tmp_path, f'model = "{bundle}"\n' + body, env={"EDGECNN_BOX_NOT_SET": None})
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    assert lines[0].startswith(f"error: {tmp_path / 'box.toml'}") and f"line {line}" in lines[0], lines[0]
    assert words in lines[0], lines[0]


START = [  # what the start would refuse, said by --check at the key's line (runtime/box/preflight.py)
    ('[page]\nserve = "80800"\n', 3, "serve: --serve '80800' is not [HOST:]PORT"),
    ('[page]\nserve = "localhost:\u0668\u0660\u0668\u0660"\n', 3, "is not [HOST:]PORT"),
    ('[page]\nserve = "box:http"\n', 3, "is not [HOST:]PORT"),
    ('[page]\nserve = "0.0.0.0:8080"\n', 3, "give --token TOKEN"),
    ('[page]\nno_auth = true\n', 3, "goes with the page"),
    ('metrics = "box:"\n', 2, "is not [HOST:]PORT"),
    ('mqtt = "mqtt://127.0.0.1:99999"\n', 2, "is not mqtt://"),
    ('mqtt = "http://127.0.0.1:1883"\n', 2, "is not mqtt://"),
    ('[sinks]\nmqtt = "mqtt://:1883/box"\n', 3, "is not mqtt://"),
    ('mqtt = "mqtt://broker:0"\n', 2, "port 1-65535"),
    ('mqtt_env = "BOX_MQTT"\n', 2, "mqtt: --mqtt mqtts://***@broker"),  # its port in Arabic-Indic digits
    ('webhook = ["http://127.0.0.1:8123/ok", "http://127.0.0.1:99999/hook"]\n', 2, "is not an http://"),
    ('webhook = "ftp://127.0.0.1/hook"\n', 2, "is not an http://"),
    ('webhook_env = "BOX_WEBHOOK"\n', 2, "webhook: --webhook https://***@/hook is not"),  # no host
    ('mqtt = "mqtts://127.0.0.1:8883"\nmqtt_ca = "afile.txt"\n', 3, "holds no PEM CA certificate"),
    ('mqtt = "mqtts://127.0.0.1:8883"\nmqtt_ca = "missing.pem"\n', 3, "cannot read it"),
    ('mqtt = "mqtt://127.0.0.1:1883"\nmqtt_ca = "afile.txt"\n', 3, "goes with an mqtts:// broker"),
    ('mqtt_ca = "afile.txt"\n', 2, "goes with mqtt ="),
    ('events = "/proc/edgecnn/events.jsonl"\n', 2, "is not a writable folder"),
    ('events = "afolder"\n', 2, "is a folder; give a file name"),
    ('jsonl = "afile.txt/{camera}.jsonl"\n', 2, "afile.txt is not a writable folder"),
    ('save = "out.avi"\n', 2, "ending in .mp4"),
    ('clips = "afile.txt"\n', 2, "exists and is not a folder"),
    ('[sinks]\nclips = "/proc/edgecnn-clips"\n', 3, "is not a writable folder"),
    ('review = "afile.txt/review"\n', 2, "is not a writable folder"),
    ('[page]\nserve = "0"\nrecord_to = "afile.txt"\n', 4, "exists and is not a folder"),
    ('data = "labelled"\n', 2, "goes with review"),
    ('consensus = "7/5"\n', 2, "give 1 <= K <= N"),
    (GOOD_CAMERA + 'collect = "/proc/edgecnn-collect"\n', 4, "is not a writable folder"),
]
SECRET_URLS = {"BOX_MQTT": "mqtts://user:s3cret@broker:\u0668\u0668\u0668\u0663/box",
               "BOX_WEBHOOK": "https://user:s3cret@/hook", "EDGECNN_TOKEN": None}


@pytest.mark.parametrize(("body", "line", "words"), START, ids=[f"{n}" for n in range(len(START))])
def test_what_the_start_would_refuse_is_one_line_with_its_line_number(bundle: Path, tmp_path: Path, body: str,
                                                                     line: int, words: str) -> None:
    (tmp_path / "afile.txt").write_text("not a certificate, not a folder\n")
    (tmp_path / "afolder").mkdir()
    text = f'model = "{bundle}"\n' + body + ("" if "[[camera]]" in body else GOOD_CAMERA)
    code, output = check(tmp_path, text, env=SECRET_URLS)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    assert lines[0].startswith(f"error: {tmp_path / 'box.toml'} line {line}: "), lines[0]
    assert words in lines[0] and "s3cret" not in output, lines[0]


def test_check_and_start_say_the_same(bundle: Path, tmp_path: Path) -> None:
    """The start reads the file through the same checks: the same line, before anything starts."""
    path = tmp_path / "box.toml"
    path.write_text(f'model = "{bundle}"\nwebhook = "http://127.0.0.1:99999/hook"\n' + GOOD_CAMERA)
    said = [CliRunner().invoke(app, ["run", str(path), *extra]) for extra in (["--check"], [])]
    assert [r.exit_code for r in said] == [2, 2] and said[0].output == said[1].output, said[1].output
    assert "line 2: webhook:" in said[0].output


def test_good_addresses_urls_and_folders_check(bundle: Path, tmp_path: Path) -> None:
    """A page on all addresses with a token, MQTT and webhook URLs, folders still to be made: all ok."""
    text = (f'model = "{bundle}"\nmqtt_env = "BOX_MQTT"\nwebhook = ["https://hooks.example/a"]\n'
            f'events = "new/deeper/events.jsonl"\nclips = "new/clips"\nreview = "new/review"\n'
            f'[page]\nserve = "0.0.0.0:8080"\ntoken_env = "BOX_TOKEN"\n' + GOOD_CAMERA)
    code, output = check(tmp_path, text, env={"BOX_MQTT": "mqtt://user:s3cret@broker:1883/box",
                                              "BOX_TOKEN": "t0ken-word"})
    assert code == 0 and "1 camera(s)" in output and "s3cret" not in output, output
    assert not (tmp_path / "new").exists()  # checked, nothing made


@pytest.mark.parametrize(("head", "words"), [
    ("", "model: is missing"),
    ('model = "no-such-bundle"\n', "no-such-bundle does not exist"),
])
def test_the_model_must_be_named_and_there(tmp_path: Path, head: str, words: str) -> None:
    code, output = check(tmp_path, head + GOOD_CAMERA)
    assert code == 2 and words in output and "line 1" in output and len(output.strip().splitlines()) == 1


def test_a_good_file_checks_and_takes_secrets_from_the_environment(bundle: Path, tmp_path: Path) -> None:
    photos = ROOT / "samples" / "photos" / "tools"
    text = (f'model = "{bundle}"\ndevice = "cpu"\ntop_k = 2\n[page]\nserve = "0.0.0.0:0"\n'
            f'token_env = "BOX_TOKEN"\n[sinks]\njsonl = "out/{{camera}}.jsonl"\n'
            f'[[camera]]\nsource = "{CUP}"\nname = "left"\nregion = [0, 0, 0.5, 1]\n'
            f'[[camera]]\nsource = "{CUP}"\nname = "right"\nregion = {{ x = 320, y = 0, w = 320, h = 480 }}\n'
            f'[[camera]]\nsource = "{photos}"\n')
    code, output = check(tmp_path, text, env={**os.environ, "BOX_TOKEN": "s3cret"})
    assert code == 0, output
    assert "3 camera(s): left [0,0,0.5,1], right [320,0,320,480], tools" in output and "s3cret" not in output


def test_every_camera_option_is_a_key() -> None:
    """The key table is the camera command's options: a new option is a key with nothing else to do."""
    import typer

    from edgecnn.cli.box import NOT_KEYS, camera_keys

    options = {p.name for p in typer.main.get_command(app).commands["camera"].params} - set(NOT_KEYS)
    assert set(camera_keys()) == options and {"region", "name", "reconnect_timeout", "jsonl"} <= options


def test_a_source_url_comes_from_the_environment(bundle: Path, tmp_path: Path) -> None:
    text = f'model = "{bundle}"\n[[camera]]\nsource_env = "BOX_CAMERA_URL"\nname = "door"\n'
    code, output = check(tmp_path, text, env={**os.environ, "BOX_CAMERA_URL": "rtsp://admin:pw@cam1/live"})
    assert code == 0 and "1 camera(s): door" in output and "pw" not in output, output
    code, output = check(tmp_path, text.replace('name = "door"\n', 'name = "door"\nsource = "x.mp4"\n'),
                         env={**os.environ, "BOX_CAMERA_URL": "rtsp://cam1/live"})
    assert code == 2 and "source: is given with source_env too" in output, output


TWO_CAMERAS = GOOD_CAMERA + 'name = "left"\n' + GOOD_CAMERA + 'name = "right"\n'
REPLACED = [  # (file that exists, box file after `model = ...`, its line, words): the start's refusals
    ("events.jsonl", 'events = "events.jsonl"\n' + GOOD_CAMERA, 2, "--events {} already exists"),
    ("out.jsonl", '[sinks]\njsonl = "out.jsonl"\n' + GOOD_CAMERA, 3, "--jsonl {} already exists"),
    ("right.jsonl", 'jsonl = "{camera}.jsonl"\n' + TWO_CAMERAS, 2, "--jsonl {} (camera right) already"),
    ("out.mp4", 'save = "out.mp4"\n' + GOOD_CAMERA, 2, "--save {} already exists"),
    ("out-2.mp4", 'save = "out.mp4"\n' + TWO_CAMERAS, 2, "--save (source 2) {} already exists"),
]


@pytest.mark.parametrize(("existing", "body", "line", "words"), REPLACED, ids=[r[0] for r in REPLACED])
def test_an_output_the_start_would_not_replace_is_refused_unless_forced(
        bundle: Path, tmp_path: Path, existing: str, body: str, line: int, words: str) -> None:
    """An earlier run's file: --check says what the start says (exit 2, the key's line); force = true lets
    both go on."""
    (tmp_path / existing).write_text("an earlier run's output\n")
    code, output = check(tmp_path, f'model = "{bundle}"\n' + body)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in output, output
    key = body.split("\n")[line - 2].split(" =")[0]
    assert lines[0].startswith(f"error: {tmp_path / 'box.toml'} line {line}: {key}: "), lines[0]
    assert words.format(tmp_path / existing) in lines[0] and "set force = true" in lines[0], lines[0]
    code, output = check(tmp_path, f'model = "{bundle}"\nforce = true\n' + body)
    assert code == 0 and "camera(s)" in output, output
    assert (tmp_path / existing).read_text() == "an earlier run's output\n"  # checked, nothing written


def test_the_start_refuses_an_earlier_runs_events_as_check_does(bundle: Path, tmp_path: Path) -> None:
    """A real run writes its events and JSONL; a second start of the same box is refused, at the key's
    line, by --check and by the start alike, until force = true (then it runs and replaces them)."""
    path = tmp_path / "box.toml"
    body = 'headless = true\nevents = "events.jsonl"\njsonl = "{camera}.jsonl"\n' + GOOD_CAMERA
    path.write_text(f'model = "{bundle}"\nmax_frames = 3\n' + body)
    first = CliRunner().invoke(app, ["run", str(path)])
    assert first.exit_code == 0 and (tmp_path / "events.jsonl").exists(), first.output
    assert len((tmp_path / "cup.jsonl").read_text().splitlines()) == 3
    said = [CliRunner().invoke(app, ["run", str(path), *extra]) for extra in (["--check"], [])]
    assert [r.exit_code for r in said] == [2, 2] and said[0].output == said[1].output, said[1].output
    assert said[0].output.startswith(f"error: {path} line 4: events: --events {tmp_path / 'events.jsonl'} "
                                     "already exists; set force = true"), said[0].output
    (tmp_path / "events.jsonl").unlink()
    code, output = check(tmp_path, f'model = "{bundle}"\nmax_frames = 3\n' + body)
    assert code == 2 and "line 5: jsonl: --jsonl" in output and "(camera cup) already exists" in output
    path.write_text(f'model = "{bundle}"\nforce = true\nmax_frames = 2\n' + body)
    again = CliRunner().invoke(app, ["run", str(path)])
    assert again.exit_code == 0 and len((tmp_path / "cup.jsonl").read_text().splitlines()) == 2, again.output


def test_even_force_never_writes_over_an_input(bundle: Path, tmp_path: Path) -> None:
    code, output = check(tmp_path, f'model = "{bundle}"\nforce = true\nsave = "{CUP}"\n' + GOOD_CAMERA)
    assert code == 2 and f"line 3: save: --save {CUP} is the --source itself" in output, output
