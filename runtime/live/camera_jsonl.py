"""`--jsonl runs/{camera}.jsonl`: one JSONL file per camera, each written like --jsonl (same records, on its
own thread through a bounded queue, under a temporary name until the run ends)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_output_path, check_writable
from edgecnn.runtime.live.frames import LiveUpdate
from edgecnn.runtime.live.recording import BackgroundWriter, JsonlWriter

PLACEHOLDER = "{camera}"
QUEUE = 4096


def per_camera(path: Path | None) -> bool:
    return path is not None and PLACEHOLDER in str(path)


def camera_paths(template: Path, cameras: tuple[str, ...], force: bool, append: bool = False
                 ) -> dict[str, Path]:
    """Each camera's file, checked like --jsonl (writable, .jsonl, new unless `force` or `append`)."""
    paths = {name: Path(str(template).replace(PLACEHOLDER, name)) for name in cameras}
    for name, path in paths.items():
        check_output_path(path, "--jsonl", suffix=".jsonl")
        check_writable(path, "--jsonl")
        if path.exists() and not force and not append:
            raise EdgecnnError(f"--jsonl {path} (camera {name}) already exists; pass --force to overwrite "
                               "it, --append to add to it or choose another --jsonl")
    return paths


class CameraJsonl:
    """A `Sink` writing each camera's records to its own file; a file is made only once it has a record."""

    def __init__(self, paths: dict[str, Path], wait: bool = True, template: Path | None = None,
                 force: bool = False, say: Callable[[str], None] = print, append: bool = False) -> None:
        self.paths, self.wait, self.template, self.force, self.say = paths, wait, template, force, say
        self.append = append
        self.writers: dict[str, BackgroundWriter] = {}
        self.refused: set[str] = set()  # cameras added to the run whose file could not be written

    def publish(self, update: LiveUpdate) -> None:
        camera = update.record.camera
        writer = self.writers.get(camera)
        if writer is None:
            if camera not in self.paths and not self._add(camera):
                return
            output = JsonlWriter(self.paths[camera], self.append)
            writer = BackgroundWriter("--jsonl", output, QUEUE, wait=self.wait)
            self.writers[camera] = writer
        writer.put(update.record.to_json())

    def _add(self, camera: str) -> bool:
        """A camera added while the run goes on (the box's reload) gets its file, checked like the others."""
        if camera in self.refused or self.template is None:
            return False
        try:
            self.paths.update(camera_paths(self.template, (camera,), self.force, self.append))
            return True
        except EdgecnnError as exc:
            self.refused.add(camera)
            self.say(f"camera {camera}: no --jsonl: {exc}")
            return False

    def finish(self, stopped_by: str) -> None:
        for writer in self.writers.values():
            writer.close()

    def describe(self) -> str:
        return "; ".join(f"{path}: {self.writers[name].written} frames" for name, path in self.paths.items()
                         if name in self.writers)
