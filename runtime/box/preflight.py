"""What `edgecnn camera` would refuse at start, checked key by key without starting anything: `read_box`
runs it on every value of a box file, so `run --check`, the start and a SIGHUP reload all say the same
thing, with the key's line. Each check is the one the start itself calls (the page's `parse_address` and
`check_access`, the sinks' `MqttTarget.parse`, `check_webhook` and `check_ca`, `check_output_path` and
`check_writable`; `check_replaced`: the files the start will not replace without `force = true` or
`append = true`, through the start's own `check_outputs`, `camera_paths` and `EventOptions.check`); none
listens on a port, connects (but `unreachable`, which `run --check` alone calls, to warn) or writes a
file (a running box may hold the ports: port 0 stays "any free port", as for `camera --serve 0`; its own
outputs lie under temporary names until it ends, or are appended to, so a reload is not refused for them).

    check_start("serve", "0.0.0.0:80800", options)  # EdgecnnError: --serve '0.0.0.0:80800' is not ...
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.core.outputs import check_output_path, check_writable

REPLACED = ("save", "jsonl", "events")  # files the start refuses to replace unless forced
FILES = {"events": ".jsonl", "jsonl": ".jsonl", "save": ".mp4"}  # keys naming a file the run writes
FOLDERS = ("review", "collect", "record_to", "snapshot_dir", "data", "cache_dir")  # ... a folder
WRITES = (*FILES, *FOLDERS, "clips")  # keys naming a place the run writes in
WITH_SERVE = ("no_auth", "record_to", "data")  # page options that mean nothing without the page
REACH_S = 2.0  # run --check's wait for a broker's or webhook's TCP connection
TOKEN_VARIABLE = "EDGECNN_TOKEN"  # camera's --token reads it; the box's start does too


def unreachable(options: Mapping[str, Any], timeout: float = REACH_S) -> list[str]:
    """`run --check` only (the one check here that connects): a line for the MQTT broker and each webhook
    that takes no TCP connection within `timeout` s; the run itself would retry them, so a warning."""
    import socket
    from urllib.parse import urlsplit

    from edgecnn.runtime.box.mqtt import MqttTarget
    from edgecnn.runtime.core.redact import mask_url

    targets = []
    if options.get("mqtt") and not isinstance(options["mqtt"], Unresolved):
        broker = MqttTarget.parse(options["mqtt"])
        targets.append(("mqtt broker", mask_url(options["mqtt"]), broker.host, broker.port))
    for url in options.get("webhook") or ():
        parts = urlsplit(url)
        targets.append(("webhook", mask_url(url), parts.hostname, parts.port or
                        (443 if parts.scheme == "https" else 80)))
    lines = []
    for kind, shown, host, port in targets:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
            lines.append(f"{kind} {shown}: cannot connect to {host}:{port} within {timeout:g} s ({why}); the "
                         "run will keep trying: check the address and that it is up")
    return lines


class Unresolved(str):
    """A secret's value left to the service's environment (`--unit`): "$VARIABLE", checked by no rule."""


def check_start(key: str, value: Any, options: Mapping[str, Any]) -> None:
    """EdgecnnError when the start would refuse `key = value` among the box's `options`."""
    check = CHECKS.get(key)
    if check is not None:
        check(value, options)
    elif key in FILES:
        _writes_file(key, value)
    elif key in FOLDERS:
        _writes_folder(key, value)
    if key in WITH_SERVE and value not in (None, False) and options.get("serve") is None:
        raise EdgecnnError(f"--{key.replace('_', '-')} goes with the page: set serve = \"[HOST:]PORT\" in "
                           "[page]")


def check_replaced(key: str, options: Mapping[str, Any], sources: Sequence[str], names: Sequence[str]
                   ) -> None:
    """EdgecnnError when the start would refuse `key`'s file for the cameras (`sources`, `names`): one that
    exists without `force = true` (each camera's for `{camera}`, each source's NAME-1.mp4...), or an input."""
    from edgecnn.runtime.box.wiring import EventOptions
    from edgecnn.runtime.live.camera import CameraConfig, check_outputs
    from edgecnn.runtime.live.camera_jsonl import camera_paths, per_camera

    force, path = bool(options.get("force", False)), options[key]
    append = bool(options.get("append", False))
    try:
        if key == "events":
            EventOptions(events=path, force=force, append=append).check()
        elif key == "jsonl" and per_camera(path):
            camera_paths(path, tuple(names), force, append)
        else:
            config = CameraConfig(sources=tuple(sources), names=tuple(names), force=force, append=append,
                                  **{key: path})
            check_outputs(config)  # each source's NAME-N.mp4 too, and never over an input
    except EdgecnnError as exc:  # the start's words, with the box file's ways to force or append
        raise EdgecnnError(str(exc).replace("pass --force", "set force = true").replace(
            "--append to", "append = true to")) from None


def check_place(key: str, path: Path) -> None:
    """The form of a place `key` writes in (a file's or a folder's), without probing it: for `--unit`,
    whose service user, not the installer, writes there."""
    if str(path) != "-":
        check_output_path(Path(path), f"--{key.replace('_', '-')}", folder=key not in FILES,
                          suffix=FILES.get(key, ""))


def written_folders(options: Mapping[str, Any], names: Sequence[str]) -> list[Path]:
    """The folders the run writes in (each file's folder, each folder named), for the service's user."""
    from edgecnn.runtime.live.camera_jsonl import per_camera

    folders: list[Path] = []
    for key in WRITES:
        path = options.get(key)
        if path is None or str(path) == "-":
            continue
        if key == "jsonl" and per_camera(path):
            folders += [Path(str(path).replace("{camera}", name)).parent for name in names]
        else:
            folders.append(Path(path).parent if key in FILES else Path(path))
    return list(dict.fromkeys(folders))


def _serve(address: str, options: Mapping[str, Any]) -> None:
    """The address's form (ASCII digits, port 0-65535) and who may watch: the start's own checks."""
    from edgecnn.runtime.live.web import check_access, parse_address

    token = options.get("token") or os.environ.get(TOKEN_VARIABLE) or None  # camera_arguments' order
    check_access(parse_address(address), token, bool(options.get("no_auth")), lambda _line: None)


def _metrics(address: str, options: Mapping[str, Any]) -> None:
    import importlib.util

    from edgecnn.runtime.core.errors import install_hint
    from edgecnn.runtime.live.web import parse_address

    parse_address(address, "--metrics")
    if importlib.util.find_spec("prometheus_client") is None:
        raise EdgecnnError(f"--metrics needs prometheus-client: {install_hint('box')}")


def _clips(folder: Path, options: Mapping[str, Any]) -> None:
    """PyAV there, a writable folder, sane roll lengths: the start's own `check_clips`."""
    from edgecnn.runtime.box.wiring import check_clips

    check_clips(folder, options.get("pre_roll", 3.0), options.get("post_roll", 3.0))


def _mqtt(url: str, options: Mapping[str, Any]) -> None:
    from edgecnn.runtime.box.mqtt import MqttTarget

    MqttTarget.parse(url)


def _mqtt_ca(ca: Path, options: Mapping[str, Any]) -> None:
    from edgecnn.runtime.box.mqtt import check_ca

    if options.get("mqtt") is None:
        raise EdgecnnError(f"--mqtt-ca {ca} goes with mqtt = \"mqtts://HOST[:PORT]\" (or mqtt_env)")
    check_ca(ca, "mqtts://" if isinstance(options["mqtt"], Unresolved) else options["mqtt"])


def _webhooks(urls: list[str], options: Mapping[str, Any]) -> None:
    from edgecnn.runtime.box.webhook import check_webhook

    for url in urls:
        check_webhook(url)


def _consensus(text: str, options: Mapping[str, Any]) -> None:
    from edgecnn.runtime.box.states import Consensus

    Consensus.parse(text, options.get("min_duration", 0.3))


def _data(folder: Path, options: Mapping[str, Any]) -> None:
    if options.get("review") is None:
        raise EdgecnnError("--data goes with review = \"DIR\": it is where the page's labels move queued "
                           "frames")
    _writes_folder("data", folder)


def _writes_file(key: str, path: Path) -> None:
    if str(path) == "-":  # standard output
        return
    option = f"--{key.replace('_', '-')}"
    if path.suffix.lower() != FILES[key] and key == "save":
        raise EdgecnnError(f"{option} {path}: give a file name ending in .mp4")
    check_output_path(path, option, suffix=FILES[key])
    check_writable(path, option)


def _writes_folder(key: str, path: Path) -> None:
    option = f"--{key.replace('_', '-')}"
    check_output_path(path, option, folder=True)
    check_writable(path, option)


CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], None]] = {
    "serve": _serve, "metrics": _metrics, "mqtt": _mqtt, "mqtt_ca": _mqtt_ca, "webhook": _webhooks,
    "consensus": _consensus, "data": _data, "clips": _clips}
