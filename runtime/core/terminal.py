"""Showing strings that come from files (labels, arch, paths, metadata) on a terminal as plain text.

A bundle is untrusted input: a label like "\\x1b]0;owned\\x07" or "[link=file:///etc/passwd]x" must
print as those characters, not retitle the terminal or become a Rich link. Every table and message
that carries a file-borne string passes it through `printable` once.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 controls (ESC, BEL, CR, newline, tab...), DEL, C1 controls (0x9b is a one-byte CSI), line and
# paragraph separators, and the bidi overrides/isolates that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: object) -> str:
    """`text` with every control character written out as an escape (ESC -> \\x1b, newline -> \\n)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(0)) or _code(m.group(0)), str(text))


def printable(text: object) -> str:
    """`text` safe to hand to Rich: control characters written out, markup escaped (`[b]` prints `[b]`)."""
    return escape(visible(text))


def _code(char: str) -> str:
    point = ord(char)
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"
