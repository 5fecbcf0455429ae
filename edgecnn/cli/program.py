"""The Typer app every command module adds its commands to, and --help without `<bool>` types."""

from __future__ import annotations

from typing import Any

import typer

app = typer.Typer(
    name="edgecnn",
    help="Fine-tune an ImageNet-pretrained CNN on your photos, export it to ONNX/OpenVINO (FP32 + INT8) "
    "and run it live on a camera.\n\nExample: edgecnn finetune samples/photos --out runs/demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# the order `edgecnn --help` lists the commands in: the pipeline's, whichever module adds them
ORDER = ("finetune", "export", "models", "predict", "eval", "bench", "camera", "run", "capture", "review",
         "info", "serve", "triton")


class _FlagsWithoutType(typer.core.TyperCommand):
    """On/off options show no `<bool>` type in --help: it invites `--json true`, which is an error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """A usage error that is a known slip (hints.py) is one line ending in the command to run."""
        from edgecnn.cli.hints import click_errors, usage_hint

        given = list(args)  # Click's parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click_errors().UsageError as error:
            hint = usage_hint(self, ctx, given, error)
            if hint is None:
                raise
            from edgecnn.cli.process import print_user_error

            print_user_error(hint)
            raise typer.Exit(2) from None


class _GroupWithoutType(typer.core.TyperGroup):
    """`edgecnn --help` itself: no `<bool>` after --help either."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


def finish(app: typer.Typer) -> typer.Typer:
    """Once every command is added: listed in ORDER; their --help, and the app's, without `<bool>`."""
    app.registered_commands.sort(key=lambda command: ORDER.index(_name(command)))
    app.info.cls = _GroupWithoutType
    for command in app.registered_commands:
        if command.cls in (None, typer.core.TyperCommand):
            command.cls = _FlagsWithoutType
    return app


def _name(command: Any) -> str:
    """A command's name as typed: its own, else its function's (`eval_command` is named `eval`)."""
    return command.name or command.callback.__name__.replace("_", "-")
