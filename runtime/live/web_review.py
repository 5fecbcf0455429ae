"""The review page's routes (`camera --review DIR --serve PORT`), added to the LiveServer's own:

    GET  /review              the review grid (static/review.html)
    GET  /api/review          the queue, newest first: ?offset=0&limit=60 (at most 200)
    GET  /api/review/ID.jpg   a queued frame
    POST /api/review/ID       {"label": "CLASS"} (a new name, or "none", is a class too) or {"discard": true}

Behind the page's gate (web.py `_Gate`: the token, the Host check), as every other route. POSTs take JSON
only, as /api/record does: a form elsewhere cannot send it without a CORS preflight, which is never
granted. The files are touched by `ReviewDesk` (review_desk.py) on a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from base64 import b64encode
from pathlib import Path
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError
from edgecnn.runtime.live.review_desk import MOST_PER_PAGE, PAGE_SIZE, Refused, ReviewDesk
from edgecnn.runtime.live.web import BODY_TIMEOUT, HEADERS, MAX_BODY, _read_at_most

PAGE = Path(__file__).with_name("static") / "review.html"
ANSWER = 'send {"label": "CLASS"} or {"discard": true}'


def page_headers(page: str) -> dict[str, str]:
    """The page's CSP: its one inline script by hash, images and requests to this server only."""
    script = re.search(r"<script>(.*?)</script>", page, re.S)[1]
    digest = b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return {**HEADERS, "Content-Security-Policy": (
        f"default-src 'none'; img-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; frame-ancestors 'none'; base-uri 'none'")}


def review_routes(desk: ReviewDesk) -> list[Any]:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = PAGE.read_text(encoding="utf-8")
    headers = page_headers(page)

    async def grid(request: Any) -> Any:
        return HTMLResponse(page, headers=headers)

    async def listing(request: Any) -> Any:
        try:
            offset, limit = _number(request, "offset", 0, 10**9), _number(request, "limit", PAGE_SIZE)
        except ValueError as exc:
            return _error(str(exc), 400)
        return JSONResponse(await run_in_threadpool(desk.listing, offset, limit), headers=HEADERS)

    async def image(request: Any) -> Any:
        try:
            data = await run_in_threadpool(desk.image, request.path_params["id"])
        except Refused as refused:
            return _error(str(refused), refused.status)
        return Response(data, media_type="image/jpeg", headers=HEADERS)

    async def answer(request: Any) -> Any:
        return await _answer(request, desk, run_in_threadpool)

    return [Route("/review", grid), Route("/api/review", listing), Route("/api/review/{id}.jpg", image),
            Route("/api/review/{id}", answer, methods=["POST"])]


def _number(request: Any, name: str, default: int, most: int = MOST_PER_PAGE) -> int:
    text = request.query_params.get(name, str(default))
    if not (text.isascii() and text.isdigit()) or int(text) > most:
        raise ValueError(f"{name}={text[:20]!r} is not a whole number from 0 to {most}")
    return int(text)


def _error(message: str, status: int, **headers: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status, headers={**HEADERS, **headers})


async def _answer(request: Any, desk: ReviewDesk, in_thread: Any) -> Any:
    """POST /api/review/ID: a label or a discard, as JSON; one-line errors with their status."""
    from starlette.responses import JSONResponse

    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error("send JSON (Content-Type: application/json)", 415)
    try:
        body = await asyncio.wait_for(_read_at_most(request, MAX_BODY), BODY_TIMEOUT)
    except TimeoutError:
        return _error(f"the request body took over {BODY_TIMEOUT:.0f} s", 408, Connection="close")
    if body is None:
        return _error(f"an answer is at most {MAX_BODY} bytes", 413, Connection="close")
    try:
        body = json.loads(body)
    except ValueError:
        return _error(f"the body is not JSON; {ANSWER}", 400)
    key = request.path_params["id"]
    try:
        if isinstance(body, dict) and body.keys() == {"discard"} and body["discard"] is True:
            return JSONResponse(await in_thread(desk.discard, key), headers=HEADERS)
        if isinstance(body, dict) and body.keys() == {"label"} and isinstance(body["label"], str):
            return JSONResponse(await in_thread(desk.label, key, body["label"]), headers=HEADERS)
        return _error(ANSWER, 400)
    except Refused as refused:
        return _error(str(refused), refused.status)
    except EdgecnnError as exc:  # the label's check
        return _error(str(exc), 400)
    except OSError as exc:
        return _error(f"cannot move the frame: {exc.strerror or exc}", 500)
