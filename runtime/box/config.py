"""The box file `edgecnn run` reads: one TOML file naming the model, the page and the cameras.

    model = "bundles/demo"            # a bundle folder or triton://HOST:PORT/MODEL
    device = "cpu"                    # ... and any `edgecnn camera` option, for every camera
    jsonl = "runs/{camera}.jsonl"     # one file per camera
    [page]
    serve = "0.0.0.0:8080"
    token_env = "EDGECNN_TOKEN"       # secrets come from the environment, never the file
    [sinks]                           # camera options again, grouped (events, mqtt, clips... as they come)
    [[camera]]
    source = "rtsp://cam1/live"
    name = "door"
    region = [0.5, 0, 0.5, 1]         # x, y, w, h: fractions 0-1 or pixels

The keys are `edgecnn camera`'s options, underscored (the CLI hands them in as `Key`s, read from the
command itself, so a new option is a key at once). Every mistake is one EdgecnnError naming the file, the
key and its line (tomllib gives no line numbers for values: the line is found by scanning the text for
the table's header and then `key =`). Rules, in the order they are applied:

1. The file is a UTF-8 TOML file of at most 1 MB; `model` and at least one `[[camera]]` are there.
2. Unknown keys and tables are refused, the nearest known key suggested.
3. A secret (a key named token, password or secret, or a URL with a password in it) written in the file
   is refused: `KEY_env = "VARIABLE"` names the environment variable holding it (any text key takes a
   `_env` twin); a variable that is not set is an error, except for `--unit` (`service=True`): the
   service gets its secrets from its EnvironmentFile, not the installer's shell, so none is read and
   `BoxConfig.variables` says which the file must set (EDGECNN_TOKEN too, for a page other machines reach
   that names no token).
4. Each value is converted and range-checked by its option's own type (the CLI's click type and ranges).
5. Per-source keys (`source`, `name`, `region`) belong to a `[[camera]]`; any other camera option set in a
   `[[camera]]` must agree with the other cameras (one loop runs them: per-camera values of loop-wide
   options are not supported yet), and is refused when it differs.
6. Camera names are unique (given or derived from the source), regions valid, sources there.
7. What the start would refuse is refused now (runtime/box/preflight.py: the start's own checks): the
   page's address and who may watch it, the MQTT and webhook URLs' forms, `mqtt_ca` a readable PEM file,
   each file or folder the run writes in a writable place (a file where a folder is needed refused), and
   none of the files it writes (save, jsonl, events) there already unless `force = true` (or, for jsonl
   and events, `append = true`), nor an input. For `--unit` only the paths' form is checked: the service
   user, not the installer, writes there (`written_folders` says where).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.runtime.box.preflight import Unresolved
from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.files import read_bounded
from edgecnn.runtime.core.redact import mask_url

MAX_BYTES = 1_000_000
MAX_CAMERAS = 64  # the camera loop's limit (camera.py MAX_SOURCES)
PER_SOURCE = ("source", "name", "region")  # one value per camera: the repeatable camera options
PAGE = ("serve", "token", "no_auth", "record_to")  # the [page] table's keys
MODEL = ("model",)
SECRET = re.compile(r"token|password|secret", re.I)
PER_CAMERA_FILES = {"jsonl": ".jsonl"}  # a per-camera value of these: the {camera} name is the way
ALIASES = {"crop": "region", "roi": "region", "url": "source", "bundle": "model"}


@dataclass(frozen=True)
class Key:
    """One config key: a camera option (its Python name), converted and checked by `convert`."""

    name: str
    convert: Callable[[Any], Any]  # the TOML value -> the option's value; EdgecnnError saying what is wrong
    default: Any = None
    text: bool = False  # takes a string: has a `_env` twin


@dataclass(frozen=True)
class BoxCamera:
    source: str
    name: str
    region: str  # "X,Y,W,H" or "full"
    line: int


@dataclass(frozen=True)
class BoxConfig:
    path: Path
    model: str
    options: dict[str, Any] = field(default_factory=dict)  # camera options, converted
    cameras: tuple[BoxCamera, ...] = ()
    variables: tuple[str, ...] = ()  # the environment variables its `_env` keys name


class _Where:
    """Line numbers for a table's keys, found by scanning the text (tomllib gives none)."""

    HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?")

    def __init__(self, path: Path, text: str, service: bool = False) -> None:
        self.path, self.lines = path, text.splitlines()
        self.service = service  # --unit: secrets unread, files' places not probed (module docstring)
        self.variables: list[str] = []  # named by `_env` keys, in order

    def line(self, table: str | None, index: int = 0, key: str | None = None) -> int:
        start, end = self._span(table, index)
        if key is not None:
            pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
            for number in range(start, end):
                if pattern.match(self.lines[number]):
                    return number + 1
        return start if table is not None else 1

    def _span(self, table: str | None, index: int) -> tuple[int, int]:
        """(first line after the header, end) of a table; the top-level table runs to the first header."""
        headers = [(n, m[2].strip().strip("\"'")) for n, line in enumerate(self.lines)
                   if (m := self.HEADER.match(line))]
        if table is None:
            return 0, headers[0][0] if headers else len(self.lines)
        found = [n for n, name in headers if name == table]
        if index >= len(found):
            return len(self.lines), len(self.lines)
        start = found[index]
        later = [n for n, _ in headers if n > start]
        return start + 1, later[0] if later else len(self.lines)

    def error(self, line: int, key: str, message: str) -> EdgecnnError:
        return EdgecnnError(f"{self.path} line {line}: {key}: {message}")


def read_box(path: Path, keys: Mapping[str, Key], append: bool = False, service: bool = False
             ) -> BoxConfig:
    """The box file at `path`, every value checked (module docstring: the rules in order); `append`:
    `run --append` over the file's key; `service`: checked for the unit `--unit` prints (rules 3 and 7)."""
    path = Path(path)
    text = _text(path)
    where = _Where(path, text, service)
    data = _parse(path, text)
    folder = path.absolute().parent
    options: dict[str, Any] = {}
    lines: dict[str, int] = {}  # each option's line, for rule 7
    model = _model(data, where, folder)
    for table, values in (("", data), ("page", data.get("page", {})), ("sinks", data.get("sinks", {}))):
        _tables_are_tables(table, values, where)
        for key, (value, line) in _known(table or None, 0, values, keys, where).items():
            if key in options:
                raise where.error(line, key, "is set twice (at the top and in [sinks]); set it once")
            options[key], lines[key] = _value(key, value, line, keys, where, folder), line
    if append:
        options["append"], lines["append"] = True, lines.get("append", 1)
    cameras = _cameras(data, keys, where, folder, options, lines)
    _service_token(options, where)
    _startable(options, lines, where, cameras)
    return BoxConfig(path=path, model=model, options=options, cameras=cameras,
                     variables=tuple(dict.fromkeys(where.variables)))


def _startable(options: dict[str, Any], lines: dict[str, int], where: _Where,
               cameras: tuple[BoxCamera, ...]) -> None:
    """Rule 7: each option the start would refuse, said at its line (the checks start nothing)."""
    from edgecnn.runtime.box.preflight import REPLACED, WRITES, check_place, check_replaced, check_start

    sources, names = [c.source for c in cameras], [c.name for c in cameras]
    for key, value in options.items():
        if isinstance(value, Unresolved):
            continue
        try:
            if where.service and key in WRITES:
                check_place(key, value)
                continue
            check_start(key, value, options)
            if key in REPLACED and str(value) != "-":
                check_replaced(key, options, sources, names)
        except EdgecnnError as exc:
            raise where.error(lines[key], key, str(exc)) from None


def _service_token(options: dict[str, Any], where: _Where) -> None:
    """--unit: a page other machines reach, with no token in the file, takes camera's EDGECNN_TOKEN from
    the service's EnvironmentFile, not from the installer's shell."""
    from edgecnn.runtime.box.preflight import TOKEN_VARIABLE
    from edgecnn.runtime.live.web import parse_address

    if not where.service or options.get("serve") is None or "token" in options or options.get("no_auth"):
        return
    try:
        loopback = parse_address(options["serve"]).loopback
    except EdgecnnError:
        return  # rule 7 says so, at its line
    if not loopback:
        options["token"] = Unresolved(f"${TOKEN_VARIABLE}")
        where.variables.append(TOKEN_VARIABLE)


def _text(path: Path) -> str:
    if not path.is_file():
        raise EdgecnnError(f"box file {path} does not exist; give a TOML file (see `edgecnn run --help`)")
    try:
        return read_bounded(path, MAX_BYTES, "box file").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgecnnError(f"{path} is not UTF-8 text ({exc}); save it as UTF-8") from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the [box] extra's tomli
        try:
            import tomli as tomllib
        except ImportError:
            raise EdgecnnError("edgecnn run needs tomli on Python 3.10: pip install 'edgecnn[box]'") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line N, column M)"
        raise EdgecnnError(f"{path}: not valid TOML: {exc}") from None


def _model(data: dict[str, Any], where: _Where, folder: Path) -> str:
    model = data.pop("model", None)
    if model is None:
        raise where.error(1, "model", 'is missing; name the model at the top: model = "bundles/demo" (a '
                          "bundle folder, .onnx, .xml or triton://HOST:PORT/MODEL)")
    line = where.line(None, 0, "model")
    if not isinstance(model, str) or not model.strip():
        raise where.error(line, "model", "give the bundle's path or triton:// URL as a string")
    if "://" in model:
        if mask_url(model) != model:
            raise where.error(line, "model", "has a password in its URL; a box file is no place for secrets")
        return model
    resolved = folder / Path(model).expanduser()
    if not resolved.exists():
        raise where.error(line, "model", f"{model} does not exist (looked in {resolved}); export a bundle "
                          "there or give its path")
    return str(resolved)


def _tables_are_tables(table: str, values: Any, where: _Where) -> None:
    if not isinstance(values, dict):
        raise where.error(where.line(None, 0, table), table, f"must be a table: [{table}]")


def _known(table: str | None, index: int, values: dict[str, Any], keys: Mapping[str, Key],
           where: _Where) -> dict[str, tuple[Any, int]]:
    """The table's keys (value, line), `_env` twins replaced by the environment's values; unknown keys
    refused."""
    allowed = _allowed(table, keys)
    out: dict[str, tuple[Any, int]] = {}
    for key, value in values.items():
        if table is None and key in ("page", "sinks", "camera"):
            continue
        line = where.line(table, index, key)
        if key.endswith("_env") and key[:-4] in allowed and keys[key[:-4]].text:
            if key[:-4] in out:
                raise where.error(line, key, f"is given with {key[:-4]} too; keep one")
            out[key[:-4]] = (_from_environment(key, value, line, where), line)
            continue
        if key not in allowed:
            raise where.error(line, key, _unknown(key, table, allowed, keys))
        if key in out:
            raise where.error(line, key, f"is given with {key}_env too; keep one")
        _no_inline_secret(key, value, line, where)
        out[key] = (value, line)
    return out


def _allowed(table: str | None, keys: Mapping[str, Key]) -> set[str]:
    if table == "page":
        return set(PAGE) & set(keys)
    if table == "camera":
        return set(keys) - set(PAGE)
    return set(keys) - set(PAGE) - set(PER_SOURCE)


def _unknown(key: str, table: str | None, allowed: set[str], keys: Mapping[str, Key]) -> str:
    place = f"[{table}]" if table else "the top of the file"
    if key in PER_SOURCE:
        return f"belongs in a [[camera]] table, not {place}"
    if key in PAGE:
        return f"belongs in the [page] table, not {place}"
    if key in keys or key in MODEL:
        return f"does not belong in {place}; put it at the top of the file or in [sinks]"
    near = ALIASES.get(key) or next(iter(difflib.get_close_matches(key, sorted(allowed), n=1)), None)
    return "is not a known key" + (f"; did you mean {near!r}?" if near else "; the keys are edgecnn "
                                   "camera's options, underscored (edgecnn camera --help)")


def _from_environment(key: str, variable: Any, line: int, where: _Where) -> str:
    if not isinstance(variable, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
        raise where.error(line, key, "give the name of an environment variable, e.g. "
                          f'{key} = "{key[:-4].upper()}"')
    where.variables.append(variable)
    if where.service:
        return Unresolved(f"${variable}")
    value = os.environ.get(variable)
    if value is None:
        raise where.error(line, key, f"the environment variable {variable} is not set; export it (a service "
                          "reads it from its EnvironmentFile)")
    return value


def _no_inline_secret(key: str, value: Any, line: int, where: _Where) -> None:
    """Refused rather than warned: a box file is copied, backed up and committed; a secret in it leaks."""
    if SECRET.search(key) and value not in (None, "", False):
        raise where.error(line, key, f"a secret written in the file is refused; set {key}_env = \"VARIABLE\" "
                          "and export VARIABLE instead")
    if isinstance(value, str) and "://" in value and mask_url(value) != value:
        raise where.error(line, key, f"the URL has a password in it; put the whole URL in an environment "
                          f"variable and set {key}_env = \"VARIABLE\"")


def _value(key: str, value: Any, line: int, keys: Mapping[str, Key], where: _Where, folder: Path) -> Any:
    if isinstance(value, Unresolved):
        return value
    try:
        converted = keys[key].convert(value)
    except EdgecnnError as exc:
        raise where.error(line, key, str(exc)) from None
    if isinstance(converted, Path) and not converted.is_absolute() and str(converted) != "-":
        converted = folder / converted  # paths in the file are relative to it ("-": standard output)
    return converted


def _cameras(data: dict[str, Any], keys: Mapping[str, Key], where: _Where, folder: Path,
             options: dict[str, Any], lines: dict[str, int]) -> tuple[BoxCamera, ...]:
    tables = data.get("camera")
    if not tables:
        raise where.error(len(where.lines) or 1, "camera", 'no camera; add a [[camera]] table with source = '
                          '"..." for each')
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise where.error(where.line(None, 0, "camera"), "camera", "write each camera as a [[camera]] table")
    if len(tables) > MAX_CAMERAS:
        raise where.error(where.line("camera", MAX_CAMERAS), "camera", f"{len(tables)} cameras; one box runs "
                          f"at most {MAX_CAMERAS}: split them over several box files")
    shared: dict[str, tuple[Any, int]] = {}  # a loop-wide option set in a [[camera]]: value, camera
    cameras = []
    for index, table in enumerate(tables):
        known = _known("camera", index, table, keys, where)
        values = {key: _value(key, value, line, keys, where, folder) if key not in PER_SOURCE else value
                  for key, (value, line) in known.items()}
        cameras.append(_camera(index, values, where, folder))
        for key, value in values.items():
            if key not in PER_SOURCE:
                _agrees(key, value, known[key][1], index, shared, options, where)
                lines.setdefault(key, known[key][1])
    options.update({key: value for key, (value, _) in shared.items()})
    return _named(cameras, where)


def _camera(index: int, values: dict[str, Any], where: _Where, folder: Path) -> BoxCamera:
    from edgecnn.runtime.live.regions import Region
    from edgecnn.runtime.live.video import check_source

    line = where.line("camera", index)
    source = values.get("source")
    if source is None:
        raise where.error(line, "source", f"camera {index + 1} has no source; add source = \"...\" (webcam "
                          "index, video file, rtsp:// URL or image folder)")
    source_line = where.line("camera", index, "source")
    if isinstance(source, bool) or not isinstance(source, str | int):
        raise where.error(source_line, "source", "give one source as a string (or a webcam index)")
    text = str(source)
    if isinstance(source, Unresolved):
        text = source
    elif "://" not in text and not text.strip().isdigit() and not Path(text).expanduser().is_absolute():
        text = str(folder / text)
    try:
        if not isinstance(text, Unresolved):
            check_source(text)
    except EdgecnnError as exc:
        raise where.error(source_line, "source", str(exc)) from None
    region_line = where.line("camera", index, "region")
    try:
        parsed = Region.parse(_region_text(values.get("region")), "region")
    except EdgecnnError as exc:
        raise where.error(region_line, "region", str(exc)) from None
    name = values.get("name")
    if name is not None and not isinstance(name, str):
        raise where.error(where.line("camera", index, "name"), "name", "give the camera's name as a string")
    return BoxCamera(source=text, name=name or "", region=str(parsed) if parsed else "full",
                     line=where.line("camera", index, "name") if name else line)


def _region_text(region: Any) -> Any:
    """region = [x, y, w, h], {x = .., y = .., w = .., h = ..} or "x,y,w,h" (Region.parse checks it)."""
    if region is None:
        return "full"
    if isinstance(region, dict):
        if set(region) != {"x", "y", "w", "h"}:
            return f"{{{', '.join(sorted(region))}}} (give x, y, w and h)"
        return [region[k] for k in "xywh"]
    numbers = isinstance(region, list) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                               for v in region)
    if isinstance(region, list) and not numbers:
        return str(region)
    return region


def _agrees(key: str, value: Any, line: int, index: int, shared: dict[str, tuple[Any, int]],
            options: dict[str, Any], where: _Where) -> None:
    differs = (key in options and options[key] != value) or (key in shared and shared[key][0] != value)
    if differs and key in PER_CAMERA_FILES:
        example = f'{key} = "runs/{{camera}}{PER_CAMERA_FILES[key]}"'
        raise where.error(line, key, f"one file per camera is {example} at the top of the file ({{camera}} "
                          "becomes each camera's name)")
    if key in options and options[key] != value:
        raise where.error(line, key, f"camera {index + 1} sets {value!r}, the top of the file "
                          f"{options[key]!r}; all cameras of a box share it (one loop runs them): set it "
                          "once at the top")
    if key in shared and shared[key][0] != value:
        raise where.error(line, key, f"camera {index + 1} sets {value!r}, camera {shared[key][1] + 1} "
                          f"{shared[key][0]!r}; all cameras of a box share it: set it once at the top")
    shared[key] = (value, index)


def _named(cameras: list[BoxCamera], where: _Where) -> tuple[BoxCamera, ...]:
    """Every camera named: given names checked, the others derived from the source, all unique."""
    from dataclasses import replace

    from edgecnn.runtime.live.names import check_camera_name, derived_name
    from edgecnn.runtime.live.sources import parse_source

    taken: dict[str, BoxCamera] = {}
    named = []
    for camera in cameras:
        if camera.name:
            try:
                check_camera_name(camera.name, "name")
            except EdgecnnError as exc:
                raise where.error(camera.line, "name", str(exc)) from None
            if camera.name in taken:
                raise where.error(camera.line, "name", f"{camera.name} is the name of the camera at line "
                                  f"{taken[camera.name].line} too; each camera needs its own name")
            name = camera.name
        else:
            base, count = derived_name(parse_source(camera.source)), 1
            name = base
            given = {c.name for c in cameras if c.name}
            while name in taken or name in given:
                count += 1
                name = f"{base[:44]}-{count}"
        camera = replace(camera, name=name)
        taken[name] = camera
        named.append(camera)
    return tuple(named)
