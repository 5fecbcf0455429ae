"""POST /api/model/reload on the `--serve` page (issue 28 item 4): the model loaded again from its path and
swapped in hot, as SIGHUP does (edgecnn/cli/model_reload.py, runtime/live/model_swap.py).

    202 {"reloading": true}    the reload started; the page's `model` changes once the new one is live
    409 {"reloading": false}   one is already under way
    404                        this run has no model to reload (`edgecnn run`: SIGHUP reloads its box file)
    415                        not sent as JSON (`Content-Type: application/json`; the body may be empty)

Behind the page's gate (web.py `_Gate`: the token, the Host check), as every other route. JSON only, as
/api/record: a form on another site cannot send it without a CORS preflight, which is never granted, so a
page elsewhere cannot make a viewer's browser reload the model.
"""

from __future__ import annotations

from typing import Any


def model_routes(server: Any, headers: dict[str, str]) -> list[Any]:
    """The route, reading `server.reload_model` (set by the run once its model loaded) at each request."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def reload(request: Any) -> Any:
        start = server.reload_model
        if start is None:
            return JSONResponse({"error": "this run has no model to reload"}, 404, headers=headers)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415, headers=headers)
        if not start():
            return JSONResponse({"reloading": False, "error": "a model reload is already under way"}, 409,
                                headers=headers)
        return JSONResponse({"reloading": True}, 202, headers=headers)

    return [Route("/api/model/reload", reload, methods=["POST"])]
