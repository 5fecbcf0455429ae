"""The one exception type for user mistakes; the CLI prints it in one line and exits 2."""


class EdgecnnError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


# Set by the CLI when Ctrl-C or SIGTERM arrives. Long jobs call `raise_if_interrupted()` between steps: a
# library may swallow the KeyboardInterrupt itself (onnxslim wraps `import onnxruntime` in a bare except).
interrupted = __import__("threading").Event()


def raise_if_interrupted() -> None:
    if interrupted.is_set():
        raise KeyboardInterrupt
