"""Masking credentials in stream URLs before a source is shown anywhere (logs, errors, JSONL, sidecars,
the page, summaries).

    mask_url("rtsp://admin:p@ss@cam/x?token=abc&ch=1") -> "rtsp://***@cam/x?token=***&ch=1"

One rule, kept here so every caller shows a source the same way:
1. The user part of the authority is masked; it runs to the last '@' (as FFmpeg splits it), also when
   the password holds '/', '?', '#' or spaces, and also without a scheme (`admin:pw@cam/x`).
2. Every `key=value` after the host (query, fragment, `;` parameters, and `/user=admin&password=x/`
   path segments as Dahua and XMeye firmware take them) whose key names a credential has its value
   masked. Credential keys: any holding pass, pwd, psw, token, key, secret, auth, sig, credential,
   session, cookie, jwt or login, and the short ones cameras use whole (`p`, `pw`, `u`, `usr`).
3. A URL nested inside (go2rtc `?src=rtsp://user:pass@cam`, raw or percent-encoded) is masked by the
   same rule, wherever it stands.
Text that merely contains URLs (a library's error message) goes through `mask_text`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

MASK = "***"
_SECRET_KEY = re.compile(r"pass|pwd|psw|token|key|secret|auth|sig|credential|session|cookie|jwt|login", re.I)
_SECRET_KEYS_WHOLE = {"p", "pw", "u", "usr"}  # too short to search for inside other keys
_HOST = re.compile(r"(\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9._~%-]*)(:[0-9]*)?")
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# A URL inside free text runs to the next whitespace or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# `user:password@host` with no scheme: a word, a colon, anything up to an '@' that a host follows.
_BARE_CREDENTIALS = re.compile(r"^[^\s/:@]+:[^\s]*@(?=[A-Za-z0-9\[])")
# key=value after a separator, in the path, query or fragment.
_PARAMETER = re.compile(r"(?<=[/?&;#])([^/?&;#=\s]+)=([^/?&;#\s]*)")


def mask_url(url: str) -> str:
    """`url` with its user:password and credential values replaced by ***; other text unchanged.

    Given text that does not start with a URL (an error message), every URL in it is masked.
    """
    if "://" not in url:
        return _BARE_CREDENTIALS.sub(f"{MASK}@", url, count=1)
    if not _URL_START.match(url):
        return mask_text(url)
    scheme, rest = url.split("://", 1)
    cut = _credentials_end(url, rest)
    if cut >= 0:
        rest = f"{MASK}@{rest[cut + 1:]}"
    host_end = next((i for i, c in enumerate(rest) if c in "/?#;"), len(rest))
    host, tail = rest[:host_end], rest[host_end:]
    nested = _URL_IN_TEXT.search(tail)
    if nested is not None:  # the nested URL runs to the end: mask it whole, by this same rule
        tail = _mask_parameters(tail[:nested.start()]) + mask_url(tail[nested.start():])
    else:
        tail = _mask_parameters(tail)
    return f"{scheme}://{host}{tail}"


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


def _mask_parameters(text: str) -> str:
    return _PARAMETER.sub(_mask_parameter, text)


def _mask_parameter(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    name = unquote_plus(key)
    if _SECRET_KEY.search(name) or name.lower() in _SECRET_KEYS_WHOLE:
        return f"{key}={MASK}"
    decoded = unquote_plus(value)
    if "://" in decoded or "@" in decoded:  # a percent-encoded URL or user:pass@host inside
        masked = mask_url(decoded)
        return f"{key}={masked}" if masked != decoded else match.group(0)
    return match.group(0)


def mask_text(text: str, *urls: str) -> str:
    """`text` with every URL in it masked; `urls` (the raw sources) are replaced first, whole, so a
    password with spaces in it is masked even where the URL cannot be told from the words around it."""
    for url in sorted(urls, key=len, reverse=True):
        masked = mask_url(url) if url else url
        if url and masked != url:
            text = text.replace(url, masked)
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group(0)), text)
