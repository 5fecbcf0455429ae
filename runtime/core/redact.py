"""Masking credentials in stream URLs before a source is shown anywhere (logs, errors, JSONL, summaries).

    mask_url("rtsp://admin:p@ss@cam/x?token=abc&ch=1") -> "rtsp://***@cam/x?token=***&ch=1"

One rule, kept here so every caller shows a source the same way: the user part runs to the last '@'
of the authority (as FFmpeg splits it), also when the password holds '/', '?', '#' or spaces, and
query values whose key names a secret are replaced. Text that merely contains URLs (a library's
error message) goes through `mask_text`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

MASK = "***"
# Query keys that carry secrets: password, pass, pwd, token, key, secret, auth, sig(nature), credential...
_SECRET_KEY = re.compile(r"pass|pwd|token|key|secret|auth|sig|credential|session|cookie|jwt", re.I)
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(:[0-9]*)?")
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside free text runs to the next whitespace or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """`url` with its user:password and secret query values replaced by ***; other text unchanged.

    Given text that does not start with a URL (an error message), every URL in it is masked.
    """
    if "://" not in url:
        return url
    if not _URL_START.match(url):
        return mask_text(url)
    scheme, rest = url.split("://", 1)
    cut = _credentials_end(url, rest)
    if cut >= 0:
        rest = f"{MASK}@{rest[cut + 1:]}"
    rest, sep, fragment = rest.partition("#")
    rest, qsep, query = rest.partition("?")
    return f"{scheme}://{rest}{qsep}{_mask_query(query)}{sep}{_mask_query(fragment)}"


def _credentials_end(url: str, rest: str) -> int:
    """Index in `rest` of the '@' ending the user part; -1 when there is none.

    urllib's netloc stops at the first '/', so a password with '/' or '?' looks like a path or a bad
    port there: then everything up to the last '@' is taken as credentials (showing too little is safe).
    """
    try:
        parts = urlsplit(url)
        netloc, path = parts.netloc, parts.path
    except ValueError:  # e.g. an unbalanced '[' inside a password
        return rest.rfind("@")
    host = netloc.rsplit("@", 1)[-1]
    if "@" not in path and _HOST.fullmatch(host):
        return netloc.rfind("@")  # a clean host: the last '@' of the netloc (or none)
    return rest.rfind("@")


def _mask_query(query: str) -> str:
    pieces = []
    for piece in query.split("&") if query else []:
        key, eq, _value = piece.partition("=")
        pieces.append(f"{key}={MASK}" if eq and _SECRET_KEY.search(unquote_plus(key)) else piece)
    return "&".join(pieces)


def mask_text(text: str, *urls: str) -> str:
    """`text` with every URL in it masked; `urls` (the raw sources) are replaced first, whole, so a
    password with spaces in it is masked even where the URL cannot be told from the words around it."""
    for url in sorted(urls, key=len, reverse=True):
        if url and "://" in url:
            text = text.replace(url, mask_url(url))
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
