"""The one exception type for user mistakes; the CLI prints it in one line and exits 2."""


class EdgecnnError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""
