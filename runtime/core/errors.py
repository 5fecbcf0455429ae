"""The one exception type for user mistakes; the CLI prints it in one line and exits 2."""


class EdgecnnError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


# Set by the CLI when Ctrl-C or SIGTERM arrives. Long jobs call `raise_if_interrupted()` between steps: a
# library may swallow the KeyboardInterrupt itself (onnxslim wraps `import onnxruntime` in a bare except).
interrupted = __import__("threading").Event()
interrupt_raised = __import__("threading").Event()  # its KeyboardInterrupt has been raised (clean-up runs)


def raise_if_interrupted() -> None:
    if interrupted.is_set():
        interrupt_raised.set()
        raise KeyboardInterrupt


# Where the extras come from: edgecnn is installed from its clone (it is not on the package registry).
TRAIN_MODULES = ("torch", "torchvision", "timm", "onnx", "nncf")


def install_hint(extra: str) -> str:
    """The command that adds an optional extra, e.g. "pip install '.[train]' (in the edgecnn clone)"."""
    return f"pip install '.[{extra}]' (in the edgecnn clone)"


def upgrade_hint() -> str:
    """How to get a newer edgecnn: from its clone, as it was installed (`pip install -U edgecnn` finds
    nothing on the registry)."""
    return "upgrade edgecnn: git pull, then pip install . (in the edgecnn clone)"


def require_train(what: str) -> None:
    """One-line EdgecnnError, before any import, when the [train] extra is not installed."""
    import importlib.util

    missing = [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise EdgecnnError(f"{what} needs the [train] extra (missing: {', '.join(missing)}): "
                           f"{install_hint('train')}")
