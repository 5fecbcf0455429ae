"""Each source's camera name: what MQTT topics, Home Assistant ids, metrics labels, events, clips and the
page call it. Given with `--name` (one per source, in order) or derived from the source, always a short
slug (`a-z0-9_-`) so it is safe in a topic, a file name and a Prometheus label, and unique in a run.

    camera_names(["samples/videos/cup.mp4", "rtsp://user:pw@cam2/live", "0"], ())
    == ("cup", "cam2-live", "camera0")
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.sources import SourceSpec, parse_source

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
MAX_NAME = 48


def check_camera_name(name: str, option: str = "--name") -> str:
    """A given name, as it is (no silent rewrite: the user will look for it in Home Assistant)."""
    if not NAME.fullmatch(name):
        shown = name if name.isprintable() and len(name) <= 60 else repr(name[:60])
        raise EdgecnnError(f"{option} {shown} is not a camera name; use 1-{MAX_NAME} of a-z, 0-9, _ and -, "
                           "starting with a letter or digit (it names MQTT topics, files and metrics)")
    return name


def derived_name(spec: SourceSpec) -> str:
    """cup.mp4 -> cup; rtsp://cam2/live -> cam2-live (credentials never); webcam 0 -> camera0."""
    if spec.kind == "camera":
        return f"camera{spec.target}"
    text = str(spec.target)
    if spec.kind == "stream":
        rest = text.split("://", 1)[-1]
        rest = rest.rsplit("@", 1)[-1].split("?", 1)[0]  # no user:password, no query (tokens live there)
        text = rest.split(":", 1)[0] + "-" + rest.split("/", 1)[1] if "/" in rest else rest.split(":", 1)[0]
    else:
        text = re.split(r"[\\/]", text.rstrip("/\\"))[-1].rsplit(".", 1)[0] or "source"
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:MAX_NAME].strip("-_")
    return slug or "source"


def camera_names(sources: Sequence[str | int], given: Sequence[str] = ()) -> tuple[str, ...]:
    """One unique name per source: `given` in order (all or none), else derived with -2, -3... on repeats."""
    if given:
        if len(given) != len(sources):
            raise EdgecnnError(f"--name was given {len(given)} times for {len(sources)} sources; give one "
                               "--name per --source, in the same order, or none")
        names = tuple(check_camera_name(name) for name in given)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise EdgecnnError(f"--name {repeated[0]} is given twice; each camera needs its own name")
        return names
    names: list[str] = []
    for source in sources:
        base = derived_name(parse_source(source))
        name, count = base, 1
        while name in names:
            count += 1
            name = f"{base[:MAX_NAME - 4]}-{count}"
        names.append(name)
    return tuple(names)
