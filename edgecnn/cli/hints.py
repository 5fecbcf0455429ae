"""Click's usage errors that are a known slip, said in one line ending in the corrected command.

`edgecnn camera BUNDLE video.mp4` (a source without --source) or `edgecnn capture --source 0` (an option
for what is an argument) got Click's boxed "Got unexpected extra argument" or "No such option: --source
(Possible options: --out)". `usage_hint` turns such an error into `error: WHAT: edgecnn COMMAND ...` with
the user's own line put right; any other usage error stays Click's. The rules are keyed per command here,
not hidden Typer parameters: `edgecnn run`'s box keys are read off the camera command's parameters.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

from edgecnn.runtime.core.redact import mask_text

# Extra positional arguments a command takes with an option instead (camera's sources are --source).
EXTRA_AS_OPTION = {"camera": "--source"}
# Options people reach for that are a command's argument; an option named like the argument is matched
# without being listed (`capture --source 0`, `info --model B`, `run --config box.toml`).
OPTION_AS_ARGUMENT = {"predict": {"source": "images", "image": "images"}, "eval": {"source": "data"}}
# Commands that read no source at all, and what they work on instead.
NO_SOURCE = {"bench": "it times the model on generated images", "serve": "clients send it their images"}
SOURCE_OPTIONS = ("source", "sources")


def click_errors() -> Any:
    """The exceptions of the Click that Typer runs on: its own copy (typer._click) since Typer 0.2x,
    the click package before."""
    return sys.modules[typer.BadParameter.__module__]


def usage_hint(command: Any, ctx: Any, given: list[str], error: Exception) -> str | None:
    """The one-line hint for `error` (raised parsing `given` for `command`), or None to leave it Click's."""
    name = ctx.info_name or command.name or ""
    if isinstance(error, click_errors().NoSuchOption):
        word = error.option_name.lstrip("-").replace("-", "_")
        if name in NO_SOURCE and word in SOURCE_OPTIONS:
            corrected = _without_option(given, error.option_name)[0]
            return f"{name} reads no source ({NO_SOURCE[name]}): {_line(name, corrected)}"
        return _option_meant_as_argument(command, name, given, error.option_name, word)
    extras = _extra_arguments(command, ctx, given)
    if not extras:
        return None
    if name in EXTRA_AS_OPTION:
        option = EXTRA_AS_OPTION[name]
        corrected = _replace_last(given, extras, lambda token: [option, token])
        return f"{name} takes its sources with {option}: {_line(name, corrected)}"
    if name in NO_SOURCE:
        corrected = _replace_last(given, extras, _dropped)
        return f"{name} reads no source ({NO_SOURCE[name]}): {_line(name, corrected)}"
    return None


def _option_meant_as_argument(command: Any, name: str, given: list[str], option: str,
                              word: str) -> str | None:
    target = OPTION_AS_ARGUMENT.get(name, {}).get(word, word)
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    argument = next((p for p in arguments if p.name == target), None)
    if argument is None:
        return None
    rest, values = _without_option(given, option)
    values = values or [target.upper()]
    corrected = values + rest if argument is arguments[0] else rest + values
    corrected += _missing_required_options(command, corrected)
    what = f"its {target} as its argument" if argument.nargs == 1 else f"its {target} as arguments"
    return f"{name} takes {what}, not {option}: {_line(name, corrected)}"


def _extra_arguments(command: Any, ctx: Any, given: list[str]) -> list[str]:
    """The positional arguments left over once the command's own are filled (Click's own parser)."""
    try:
        _, extras, _ = command.make_parser(ctx).parse_args(args=list(given))
    except click_errors().UsageError:
        return []
    return [] if ctx.allow_extra_args else list(extras)


def _without_option(given: list[str], option: str) -> tuple[list[str], list[str]]:
    """`given` without `option VALUE` / `option=VALUE` (each time it occurs), and those values."""
    rest, values, index = [], [], 0
    while index < len(given):
        token = given[index]
        if token == option:
            values += given[index + 1:index + 2]
            index += 2
            continue
        if token.startswith(option + "="):
            values.append(token[len(option) + 1:])
        else:
            rest.append(token)
        index += 1
    return rest, values


def _replace_last(given: list[str], extras: list[str], replace: Any) -> list[str]:
    """`given` with the last occurrence of each extra argument replaced by `replace(token)`'s tokens."""
    tokens = [[token] for token in given]
    pending = list(extras)
    for index in range(len(tokens) - 1, -1, -1):
        if pending and given[index] == pending[-1]:
            tokens[index] = replace(pending.pop())
    return [token for group in tokens for token in group]


def _dropped(token: str) -> list[str]:
    return []


def _missing_required_options(command: Any, tokens: list[str]) -> list[str]:
    """`--out OUT` for each required option the line lacks, so the corrected command runs."""
    missing = []
    for param in command.params:
        if param.param_type_name == "option" and param.required:
            flag = max(param.opts, key=len)
            if not any(token == flag or token.startswith(flag + "=") for token in tokens):
                missing += [flag, (param.name or "value").upper()]
    return missing


def _line(name: str, tokens: list[str]) -> str:
    """The command line to run, credentials in URLs masked (runtime/core/redact.py)."""
    return mask_text(shlex.join(["edgecnn", name, *tokens]), *tokens)
