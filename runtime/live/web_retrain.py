"""The review page's Retrain button (issue 29 item 3): the retrain job of `edgecnn review --retrain`
(runtime/box/retrain.py) started from the page, in the background, with its progress.

    POST /api/retrain   202 {"retraining": true}: started; 409 while one runs; 404 when this run cannot
                        retrain (no bundle folder); 415 when not sent as JSON
    GET  /api/retrain   {"running", "progress": [lines], "result": the job's summary or null, "error"}

Behind the page's gate (web.py `_Gate`: the token, the Host check), as every other route; JSON only, as
/api/record, so a form on another site cannot start a retrain. The job itself (`desk.retrain_job.run`)
is set by the camera command once its model loaded: this module never imports torch, the job runs the
fine-tune and the export in one child process at a lower priority (runtime/box/retrain.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from edgecnn.runtime.core.errors import EdgecnnError

PROGRESS_LINES = 50  # the last lines GET /api/retrain shows

Job = Callable[[Callable[[str], None]], dict[str, Any]]  # run(say) -> the summary


class RetrainJob:
    """One retrain at a time on a thread of its own; its progress lines and last summary for the page."""

    def __init__(self, run: Job) -> None:
        self.run = run
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._state: dict[str, Any] = {"running": False, "progress": [], "result": None, "error": None}

    def start(self) -> bool:
        """Start the job; False when one is running."""
        with self._lock:
            if self._state["running"]:
                return False
            self._state = {"running": True, "progress": [], "result": None, "error": None,
                           "started": time.time()}
            self._thread = threading.Thread(target=self._work, name="edgecnn-retrain", daemon=True)
            self._thread.start()
        return True

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {**self._state, "progress": list(self._state["progress"])}

    def wait(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _say(self, line: str) -> None:
        with self._lock:
            self._state["progress"] = [*self._state["progress"], line][-PROGRESS_LINES:]

    def _work(self) -> None:
        result, error = None, None
        try:
            result = self.run(self._say)
        except EdgecnnError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in the job: the page says so, the camera goes on
            error = f"the retrain failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._state.update(running=False, result=result, error=error, ended=time.time())


def retrain_routes(desk: Any, headers: dict[str, str]) -> list[Any]:
    """The two routes, reading `desk.retrain_job` (None: this run cannot retrain) at each request."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def missing() -> Any:
        return JSONResponse({"error": "this run cannot retrain: the camera's model is not a bundle folder "
                             "exported from a `finetune` checkpoint"}, 404, headers=headers)

    async def start(request: Any) -> Any:
        job = getattr(desk, "retrain_job", None)
        if job is None:
            return missing()
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415, headers=headers)
        if not job.start():
            return JSONResponse({"retraining": False, "error": "a retrain is already running"}, 409,
                                headers=headers)
        return JSONResponse({"retraining": True}, 202, headers=headers)

    async def progress(request: Any) -> Any:
        job = getattr(desk, "retrain_job", None)
        return missing() if job is None else JSONResponse(job.state(), headers=headers)

    return [Route("/api/retrain", start, methods=["POST"]), Route("/api/retrain", progress)]
