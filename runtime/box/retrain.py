"""The retrain job: frames just labelled plus the training data make a new bundle, gated against the live
one and moved into its place only when it is at least as good (a camera watching the folder swaps it).

Torch-free: the fine-tune and the export run in one child process (`python -m edgecnn.cli.retrain_child`:
one Python + torch start-up, where a child per stage paid two) at a lower priority, so a camera on the
same cores keeps most of them: `nice` 5 (on a CPU the camera keeps busy, the child gets about a quarter
of it by the scheduler's weights, 335 against 1024; nice 19 + SCHED_IDLE was dropped so a retrain beside
a busy camera still ends) and the lowest best-effort I/O priority (`ionice -c 2 -n 7`) when ionice is
installed. A camera running flat out kept 0.81 of its frame rate during a retrain (benchmarks/retrain.py
--camera, one run on a loaded machine).
The recipe, checked first, minutes last:

1. Read the live bundle: its architecture, its precisions and formats, its run's validation images
   (report.json `split`: the old validation set). A bundle that records none is refused.
2. Hold out `holdout` of the frames just labelled, per label (at least one of a label with two or more),
   seeded: they are the "frames just labelled" the gate scores, and never trained on.
3. A training tree of hard links (a copy across disks): `train/CLASS/` every image of DATA except the
   held-out frames and the old validation images, `val/CLASS/` the old validation images. The feature
   cache is keyed by file content, so the links reuse every feature computed before.
4. Fine-tune head-only with the live run's seed (no plots); export with the live bundle's formats, INT8
   (and so export's INT8 gate) when the live bundle has INT8, without the figures only the report shows
   (`ExportConfig.full_report`). A failed export gate refuses the model.
5. The gate (`judge`), both bundles at the precision the runtime would pick (`auto`): accepted only if
   (a) on the old validation set the new model is right at least as often as the live one, less one
   image, (b) on the held-out frames it is right more often than the live one, and (c) on at least
   MIN_LABELLED of them (labels given at random are learnt no better than chance).
6. Accepted: the new bundle replaces the live folder in one rename (`outputs.swap_folder`); refused: the
   live bundle is untouched and the reason is one line.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.runtime.core import outputs
from edgecnn.runtime.core.bundle import LAYOUT, Bundle
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.images import IMAGE_SUFFIXES, read_image

CHILD_STAGE = "retrain-child:"  # how edgecnn/cli/retrain_child.py starts the line of each stage it ends
NICE = 5  # weight 335 against the camera's 1024: it yields, and is not starved
OLD_SLACK = 1  # images the new model may lose on the old validation set ("within one image")
# share of the held-out frames just labelled the new model must get right: frames labelled at random
# (a slip, a joke) are learnt as well as chance allows, about 1 / classes, so "better than the live model"
# alone would pass them whenever the live model did not know the class
MIN_LABELLED = 0.8
# a child (fine-tune, export) that runs longer is hung: 290 s was the slowest whole retrain seen (load 7)
CHILD_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class RetrainConfig:
    data: Path  # the training data folder, one subfolder per class, the labelled frames in it
    bundle: Path  # the live bundle, replaced when the new model is accepted
    labelled: tuple[Path, ...]  # the frames just labelled (inside `data`)
    holdout: float = 0.25  # share of each label's new frames the gate scores, never trained on
    head_epochs: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Score:
    """Right answers (top-1) of one model on one image set."""

    right: int
    images: int


@dataclass(frozen=True)
class RetrainResult:
    accepted: bool
    reason: str  # why, in one line
    old_classes: tuple[Score, Score]  # (live, new) on the old validation set
    labelled: tuple[Score, Score]  # (live, new) on the held-out frames just labelled
    trained_frames: int  # frames just labelled that went into training
    seconds: dict[str, float] = field(default_factory=dict)  # features, training, export, gate, total
    bundle: str = ""


def retrain(config: RetrainConfig, say: Callable[[str], None]) -> RetrainResult:
    """Run the recipe above; `say` gets the progress lines (stage and seconds)."""
    began = time.perf_counter()
    live = Bundle(config.bundle)
    old_val = old_validation(live, Path(config.data))
    held, trained = hold_out(config)
    say(f"retrain: {len(trained)} frames just labelled to train on, {len(held)} held out for the gate; "
        "fine-tune started")
    parent = Path(config.bundle).resolve().parent
    work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{live.root.name}.retrain-"))
    try:
        seconds = _build(config, live, work, old_val, held, say)
        clock = time.perf_counter()
        old_scores, new_scores = (score(path, old_val, held) for path in (live.root, work / "bundle"))
        seconds["gate"] = time.perf_counter() - clock
        accepted, reason = judge(old_scores, new_scores)
        say(f"retrain: gate {seconds['gate']:.1f} s: {reason}")
        if accepted:
            outputs.swap_folder(work / "bundle", Path(config.bundle))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds["total"] = time.perf_counter() - began
    return RetrainResult(accepted, reason, (old_scores[0], new_scores[0]), (old_scores[1], new_scores[1]),
                         len(trained), seconds, str(config.bundle))


def page_job(desk: Any, bundle: Path, server: Any) -> Callable[[Callable[[str], None]], dict[str, Any]]:
    """The review page's Retrain button (web_retrain.py): `retrain` on the frames the page labelled since
    the last accepted retrain; accepted, the camera is asked to load the bundle again (`server.reload_model`,
    the hot swap of POST /api/model/reload); otherwise those frames count again in the next retrain."""

    def run(say: Callable[[str], None]) -> dict[str, Any]:
        labelled = desk.take_labelled()
        try:
            result = retrain(RetrainConfig(Path(desk.data), Path(bundle), tuple(labelled)), say)
        except BaseException:
            desk.give_back(labelled)
            raise
        if not result.accepted:
            desk.give_back(labelled)
        elif getattr(server, "reload_model", None) is not None:
            say("retrain: the camera loads the new model" if server.reload_model() else
                "retrain: a model reload was under way; the camera loads the new bundle with it or next")
        return asdict(result)

    return run


def old_validation(live: Bundle, data: Path) -> list[tuple[Path, str]]:
    """The live run's validation images with their classes, found where they were trained, else in DATA
    under the same CLASS/NAME."""
    report = live.report
    if report is None or report.split is None or not report.split.val:
        raise EdgecnnError(f"{live.root} records no validation images (report.json split); export it from a "
                           "`finetune` checkpoint to retrain it")
    found = []
    for rel in report.split.val:
        parts = Path(rel).parts
        for path in (Path(report.split.data_root) / rel, data.joinpath(*parts[-2:])):
            if path.is_file():
                found.append((path, parts[-2]))
                break
    if not found:
        raise EdgecnnError(f"none of the {len(report.split.val)} validation images of {live.root} are in "
                           f"{report.split.data_root} or {data}; retrain on the data it was trained on")
    return found


def hold_out(config: RetrainConfig) -> tuple[list[tuple[Path, str]], list[Path]]:
    """(held-out frames with their labels, frames to train on), per label, seeded."""
    data = Path(config.data).resolve()
    by_label: dict[str, list[Path]] = {}
    for path in config.labelled:
        resolved = Path(path).resolve()
        if resolved.parent.parent != data:
            raise EdgecnnError(f"labelled frame {path} is not in a class folder of {config.data}")
        by_label.setdefault(resolved.parent.name, []).append(resolved)
    held, trained, rng = [], [], random.Random(config.seed)
    for label, frames in sorted(by_label.items()):
        frames = sorted(frames)
        rng.shuffle(frames)
        count = min(len(frames) - 1, max(1, round(len(frames) * config.holdout))) if len(frames) > 1 else 0
        held += [(frame, label) for frame in frames[:count]]
        trained += frames[count:]
    if not held:
        raise EdgecnnError("the gate needs frames to score: label at least two frames of a class")
    return held, trained


def _build(config: RetrainConfig, live: Bundle, work: Path, old_val: list[tuple[Path, str]],
           held: list[tuple[Path, str]], say: Callable[[str], None]) -> dict[str, float]:
    """The training tree, the fine-tune and the export in `work`: the seconds of each stage."""
    skip = {path.resolve() for path, _ in held} | {path.resolve() for path, _ in old_val}
    skip |= {(Path(config.data) / label / path.name).resolve() for path, label in old_val}
    tree = work / "data"
    for path, label in _images(Path(config.data)):
        if path.resolve() not in skip:
            _link(path, tree / "train" / label)
    for path, label in old_val:
        _link(path, tree / "val" / label)
    report = live.report
    spec = {"data": str(tree), "run": str(work / "run"), "bundle": str(work / "bundle"),
            "arch": report.arch if report and report.arch else "efficientnet_lite0", "seed": config.seed,
            "head_epochs": config.head_epochs, **export_options(live)}
    clock = time.perf_counter()
    stages = _child(["-m", "edgecnn.cli.retrain_child", json.dumps(spec)], work / "build.log",
                    "fine-tune and export")
    finetune = time.perf_counter() - clock - stages["export"]  # with the child's start-up (Python, torch)
    training = _head_seconds(work / "run" / "metrics.csv")
    seconds = {"features": finetune - training, "training": training, "export": stages["export"]}
    say(f"retrain: fine-tune {finetune:.1f} s (features and start-up {finetune - training:.1f} s, head "
        f"epochs {training:.1f} s)")
    say(f"retrain: export {seconds['export']:.1f} s")
    return seconds


def export_options(live: Bundle) -> dict[str, Any]:
    """The live bundle's formats (both when it has both or neither), and INT8 when it has INT8 models."""
    present = [f for f in LAYOUT if live.file(f.path, external_data=False) is not None]
    backends = {f.backend for f in present}
    word = {"onnxruntime": "onnx", "openvino": "openvino"}
    formats = [word[backend] for backend in backends] if len(backends) == 1 else ["onnx", "openvino"]
    return {"int8": any(f.precision == "int8" for f in present), "formats": formats}


def _images(data: Path) -> list[tuple[Path, str]]:
    if not data.is_dir():
        raise EdgecnnError(f"data folder {data} is not a folder; give one subfolder per class")
    return [(path, folder.name) for folder in sorted(data.iterdir())
            if folder.is_dir() and not folder.name.startswith(".")
            for path in sorted(folder.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")]


def _link(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    try:
        os.link(path, target)
    except FileExistsError:
        pass  # the same CLASS/NAME found twice (its training place and DATA): one is enough
    except OSError:
        shutil.copyfile(path, target)  # another disk


def _head_seconds(metrics: Path) -> float:
    import csv

    with open(metrics, newline="") as file:
        return sum(float(row["seconds"]) for row in csv.DictReader(file) if row["phase"] == "head")


def child_environment() -> dict[str, str]:
    """This process's environment, with the folder this edgecnn was imported from first on the path: the
    child runs the same edgecnn (a source tree beside an installed copy, whatever the working folder)."""
    import edgecnn

    root = str(Path(edgecnn.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, path] if path else [root])}


def child_command(args: Sequence[str]) -> list[str]:
    """`python ARGS` under `nice -n NICE` and `ionice -c 2 -n 7` (lowest best-effort I/O) where they are
    installed. Programs, not a preexec_fn: Python code between fork and exec can deadlock in a process
    with threads (the page's job runs on one beside the server's); twice in local CI the page retrain's
    fine-tune child gave no line in 900 s (whether this was the cause is not proven)."""
    nice, ionice = shutil.which("nice"), shutil.which("ionice")
    return [*([nice, "-n", str(NICE)] if nice else []), *([ionice, "-c", "2", "-n", "7"] if ionice else []),
            sys.executable, *args]


def _child(args: Sequence[str], log: Path, stage: str) -> dict[str, float]:
    """Run one Python child at a lower priority, its output in `log`; its last line on failure. Returns
    the seconds of the stages it reported (`retrain-child: STAGE SECONDS` lines). A child still running
    after CHILD_TIMEOUT_S is hung, not slow: SIGABRT makes it print every thread's stack
    (PYTHONFAULTHANDLER) into its log, which is kept beside the bundle and named in the error."""
    env = child_environment() | {"PYTHONFAULTHANDLER": "1"}
    with open(log, "wb") as out:
        child = subprocess.Popen(child_command(args), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env)
        try:
            code = child.wait(CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            code = _reap(child)
            raise EdgecnnError(f"the retrain's {stage} gave no result in {CHILD_TIMEOUT_S:.0f} s and was "
                               f"stopped; its output and stacks: {_keep(log)}; the live bundle is "
                               "untouched") from None
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if code != 0:
        last = next((line for line in reversed(lines) if "error" in line or "failed" in line),
                    lines[-1] if lines else "no output")
        raise EdgecnnError(f"the retrain's {stage} failed (exit {code}): {last.strip()}; its output: "
                           f"{_keep(log)}; the live bundle is untouched")
    return {words[1]: float(words[2]) for words in (line.split() for line in lines)
            if len(words) == 3 and words[0] == CHILD_STAGE}


def _reap(child: subprocess.Popen[bytes]) -> int:
    """Wait for a child told to stop; kill it when it does not."""
    try:
        return child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def _keep(log: Path) -> Path:
    """The failed child's log, moved out of the work folder (deleted after the job) to its parent, the
    live bundle's folder's parent: .BUNDLE.retrain-STAGE.log, the newest failure of each stage."""
    work = log.parent
    kept = work.parent / f"{work.name.split('.retrain-')[0]}.retrain-{log.name}"
    os.replace(log, kept)
    return kept


def score(bundle: Path, old_val: list[tuple[Path, str]], held: list[tuple[Path, str]]) -> tuple[Score, Score]:
    """Top-1 right answers of `bundle` on the old validation set and on the held-out frames."""
    from edgecnn.runtime.core.engine import load

    engine = load(bundle, device="cpu")
    try:
        return tuple(_right(engine, images) for images in (old_val, held))  # type: ignore[return-value]
    finally:
        engine.close()


def _right(engine: object, images: list[tuple[Path, str]]) -> Score:
    right = 0
    for start in range(0, len(images), 16):
        chunk = images[start:start + 16]
        answers = engine.classify([read_image(path) for path, _ in chunk], top_k=1)  # type: ignore[attr-defined]
        right += sum(answer[0].label == label for answer, (_, label) in zip(answers, chunk, strict=True))
    return Score(right, len(images))


def judge(old: tuple[Score, Score], new: tuple[Score, Score]) -> tuple[bool, str]:
    """Rule 5: (a) old classes within OLD_SLACK images, (b) more right on the frames just labelled than the
    live model, (c) right on MIN_LABELLED of them."""
    (old_val, old_held), (new_val, new_held) = old, new
    figures = (f"old classes {new_val.right}/{new_val.images} (live {old_val.right}), frames just labelled "
               f"{new_held.right}/{new_held.images} (live {old_held.right})")
    if new_val.right < old_val.right - OLD_SLACK:
        return False, f"refused: worse on the old classes by more than {OLD_SLACK} image: {figures}"
    if new_held.right <= old_held.right:
        return False, f"refused: no better on the frames just labelled: {figures}"
    if new_held.right < MIN_LABELLED * new_held.images:
        return False, (f"refused: right on fewer than {MIN_LABELLED:.0%} of the frames just labelled (are "
                       f"the labels right?): {figures}")
    return True, f"accepted: {figures}"
