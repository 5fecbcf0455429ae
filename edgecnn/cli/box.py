"""`edgecnn run BOX.toml`: the cameras of one box file, run the way `edgecnn camera` runs them (it calls it:
the same loop, sinks, page and whatever `camera` checks at start, such as issue 28's self-test); `--check`
validates, `--unit` prints the systemd unit; SIGHUP re-reads the file and changes the cameras in the running
loop (runtime/box/config.py: the rules; runtime/box/reload.py: the reload)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from edgecnn.cli.live import camera
from edgecnn.cli.process import user_errors
from edgecnn.cli.program import app
from edgecnn.cli.render import err_console, say, tell, warn
from edgecnn.runtime.core.errors import EdgecnnError

NOT_KEYS = ("model", "sources", "help")  # the model is its own key; the box file itself lists the sources


@app.command("run", epilog="Example: edgecnn run box.toml --check\n\nAs a service: edgecnn run box.toml "
                           "--unit > edgecnn.service && sudo install -m 644 edgecnn.service "
                           "/etc/systemd/system/")
@user_errors
def run_box(
    config: Annotated[Path, typer.Argument(help="The box file (TOML): model, [page], [sinks] and [[camera]] "
                                                "tables; keys are `edgecnn camera`'s options, underscored.")],
    check: Annotated[bool, typer.Option("--check", help="Validate the file and exit (nothing starts).")
                     ] = False,
    unit: Annotated[bool, typer.Option("--unit", help="Print a systemd unit that runs this box and exit.")
                    ] = False,
    user: Annotated[str, typer.Option(help="With --unit: the dedicated user the service runs as.")
                    ] = "edgecnn",
    append: Annotated[bool, typer.Option("--append", help="Add to existing jsonl and events files (as "
                                         "append = true; the unit's ExecStart passes it).")] = False,
) -> None:
    """Run the cameras a box file names (one model, one page, each camera its own name, region, outputs).

    SIGHUP (systemctl reload) re-reads the file: cameras added, removed or changed without restarting the
    others; a changed model, or its bundle exported over, is swapped in hot. Keys are `edgecnn camera`'s
    options, underscored; --check says what is wrong, with its line.
    """
    from edgecnn.runtime.box.config import read_box
    from edgecnn.runtime.box.preflight import unreachable
    from edgecnn.runtime.box.service import unit as service_unit
    from edgecnn.runtime.box.service import watchdog_for

    keys = camera_keys()
    box = read_box(config, keys, append=append or unit, service=unit)  # the unit's start appends
    if unit:
        watchdog = watchdog_for(box.options.get("reconnect_timeout", keys["reconnect_timeout"].default))
        text = service_unit(config, user=user, watchdog_s=watchdog)
        _tell_installer(box, user)
        typer.echo(text, nl=False)
        return
    arguments = camera_arguments(box)
    if check:
        names = ", ".join(c.name + ("" if c.region == "full" else f" [{c.region}]") for c in box.cameras)
        tell(f"{config}: ok: {len(box.cameras)} camera(s): {names}; model {box.model}")
        _tell_installer(box, None)
        for line in unreachable(box.options):
            warn(f"warning: {line}")
        return
    if not err_console.is_terminal:  # journald, a log file: one line per event, never wrapped into two
        err_console.soft_wrap = True
    say(f"box {config}: {len(box.cameras)} camera(s), model {box.model}")
    with _reload_on_sighup(config, keys, box, partial(_load_model, arguments), append):
        camera(**arguments)


def _tell_installer(box: Any, user: str | None) -> None:
    """A line each (on stderr for the unit): the folders the run writes in (the service's user must own
    them) and, for the unit, the variables its EnvironmentFile must set."""
    from edgecnn.runtime.box.preflight import written_folders
    from edgecnn.runtime.box.service import environment_file

    folders = " ".join(str(f) for f in written_folders(box.options, [c.name for c in box.cameras]))
    if folders and user is not None:  # stderr: the unit alone goes to stdout
        warn(f"the service writes in {folders}: make them {user}'s: sudo install -d -o {user} -g {user} "
             f"{folders}")
    elif folders:
        tell(f"writes in: {folders}")
    if box.variables and user is not None:
        warn(f"{environment_file(box.path)} must set {', '.join(box.variables)} (VARIABLE=value lines, "
             "mode 600): the service reads its secrets from there")
    if user is not None and box.options.get("save") is not None and not box.options.get("force"):
        warn(f"warning: save = {box.options['save']}: a restart refuses the file the last start wrote (an "
             "MP4 cannot be appended to); set force = true to replace it at each start, or drop save")


def camera_keys() -> dict[str, Any]:
    """Every `camera` option as a config key, read from the command itself (name, type, range, default)."""
    from edgecnn.runtime.box.config import Key

    command = typer.main.get_command(app).commands["camera"]  # type: ignore[attr-defined]
    keys = {}
    for param in command.params:
        if param.name in NOT_KEYS:
            continue
        kind = _kind(param)
        keys[param.name] = Key(param.name, partial(_convert, param, kind), param.default,
                               text=kind in (str, Path))
    return keys


def _kind(param: Any) -> type:
    """The option's value type (int, float, bool, str or Path), from its annotation."""
    import typing

    annotation = param.type_descriptor.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args and annotation not in (int, float, bool, str, Path) else annotation


WANTED: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), bool: (bool,), str: (str,),
                                        Path: (str,)}
SAYS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string in quotes",
        Path: "a path in quotes"}


def _convert(param: Any, kind: type, value: Any) -> Any:
    """A TOML value as the option's value, strictly typed (5 is not "5") and range-checked like the option:
    its own min/max, then the options table (`check_range`)."""
    if param.multiple:  # a repeatable option (webhook): one value or a list of them
        return [_convert_one(param, kind, item) for item in (value if isinstance(value, list) else [value])]
    return _convert_one(param, kind, value)


def _convert_one(param: Any, kind: type, value: Any) -> Any:
    from edgecnn.runtime.core.options import check_range

    if not isinstance(value, WANTED.get(kind, (str,))) or (kind is not bool and isinstance(value, bool)):
        wanted = SAYS.get(kind, "a string")
        raise EdgecnnError(f"{_toml(value)} is a TOML {type(value).__name__}; give {wanted}")
    converted = float(value) if kind is float else Path(value) if kind is Path else value
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if (low is not None and converted < low) or (high is not None and converted > high):
        raise EdgecnnError(f"{value} is out of range; give {low} to {high}")
    check_range(param.name, converted)
    if param.name == "device":
        from edgecnn.cli.common import device_word

        converted = device_word(converted)  # cuda is gpu, said once, as the option's callback does
    return converted


def _toml(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def camera_arguments(box: Any) -> dict[str, Any]:
    """`camera`'s arguments for the box: its defaults, the file's options, and one source, name and region
    per camera."""
    defaults = {name: p.default for name, p in inspect.signature(camera).parameters.items()
                if p.default is not inspect.Parameter.empty}
    arguments = {**defaults, **_from_envvars(), **box.options, "model": Path(box.model)}
    arguments.update(source=[c.source for c in box.cameras], name=[c.name for c in box.cameras],
                     region=[c.region for c in box.cameras] if any(c.region != "full" for c in box.cameras)
                     else None)
    return arguments


def _from_envvars() -> dict[str, Any]:
    """Options that `camera` reads from an environment variable (--token: EDGECNN_TOKEN), as its CLI would:
    calling the function skips Typer's parsing; the file's own keys still win."""
    import os

    command = typer.main.get_command(app).commands["camera"]  # type: ignore[attr-defined]
    found = {}
    for param in command.params:
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        values = [os.environ[name] for name in names if os.environ.get(name)]
        if values:
            found[param.name] = values[0]
    return found


@contextmanager
def _reload_on_sighup(config: Path, keys: dict[str, Any], box: Any,
                      load_model: Callable[[str], Any], append: bool = False) -> Iterator[None]:
    """SIGHUP (systemctl reload): the file re-read and validated; cameras added, removed or changed in the
    running loop without restarting the others, a changed model swapped in (runtime/box/reload.py); changed
    options need a restart."""
    import signal

    from edgecnn.runtime.box.reload import Reloader
    from edgecnn.runtime.live.camera import CALLER_SINKS

    reloader = Reloader(box, say, load_model, watch_model=box.options.get("watch_model", True))
    token = CALLER_SINKS.set((reloader,))
    def hangup(signum: int, frame: Any) -> None:
        reloader.request(lambda: _reload(config, keys, reloader, say, append))

    previous = signal.signal(signal.SIGHUP, hangup) if hasattr(signal, "SIGHUP") else None
    try:
        yield
    finally:
        CALLER_SINKS.reset(token)
        if previous is not None:
            signal.signal(signal.SIGHUP, previous)


def _load_model(arguments: dict[str, Any], model: str) -> Any:
    """A new model for a reload, loaded as `camera` loads its model at start (the box's device, backend,
    precision, threads, cache) and self-tested; the caller owns it."""
    from edgecnn.cli.common import load_engine
    from edgecnn.runtime.live.camera import camera_engine

    threads = arguments.get("threads")
    settings = camera_engine() if threads is None else {"threads": threads}
    return load_engine(Path(model), arguments["device"], arguments["backend"], arguments["precision"],
                       **settings, cache_dir=arguments.get("cache_dir"), selftest=True)


def _reload(config: Path, keys: dict[str, Any], reloader: Any, say: Callable[[str], None],
            append: bool = False) -> None:
    """What a SIGHUP asks for, run on the loop's thread between two batches: once the file is valid, its
    camera changes applied and a changed model loaded beside the running one (runtime/box/reload.py)."""
    from edgecnn.runtime.box.config import read_box

    try:
        new = read_box(config, keys, append=append)
    except EdgecnnError as exc:
        say(f"reload refused: {exc}; the running cameras go on unchanged")
        return
    changes = reloader.apply(new)
    say(f"reload: {config} is valid; {changes or 'nothing changed'}")
