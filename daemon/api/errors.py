"""Every failure answers JSON with ``success: false`` and an ``error`` saying what to do."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.errors import RequestError
from edgewatch.daemon.redaction import printable, redact
from edgewatch.models.files import disk_full

log = logging.getLogger("edgewatch.api")

MAX_MESSAGE = 1000  # longest error text answered or logged


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _handled_by(request: Request) -> tuple[object | None, str | None]:
    """The module and command of the route that took the request (from its ``opt``), if any."""
    handler = request.scope.get("route_handler")
    opt = getattr(handler, "opt", None) or {}
    services = request.app.state.get("services")
    module = services.modules.get(opt.get("module")) if services is not None else None
    return module, opt.get("command")


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # a client's mistakes are worth a line: a misconfigured NVR shows up here first. Messages echo
    # client text: secrets hidden, control characters escaped (no forged log lines), length capped.
    message = redact(message)
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    log.log(logging.WARNING if status >= 500 else logging.INFO, "%d on %s %s: %s", status,
            printable(request.method, 16), printable(request.url.path), printable(message, MAX_MESSAGE))
    module, command = _handled_by(request)
    if module is not None and command is not None:
        body = module.error_envelope(command, status, message, received_at(request))
    else:  # no module's route (an unknown path, the daemon's own routes): a neutral envelope
        body = {"success": False, "error": message, "code": status}
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def handle_api_error(request: Request, exc: ApiError) -> Response:
    return error_response(request, exc.status, exc.message, exc.headers)


def handle_request_error(request: Request, exc: RequestError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return error_response(request, exc.status, exc.message, headers)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status == 404:
        message = f"no such endpoint {printable(request.method, 16)} {printable(request.url.path)}; see /schema for the API"
    elif status == 405:
        message = f"{printable(request.method, 16)} is not allowed on {printable(request.url.path)}; see /schema for the API"
    elif status == 413:
        message = "request body too large: send a smaller image or raise server.max_body_bytes"
    elif isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        parts = [f"{e.get('key')}: {e.get('message')}" for e in extra if isinstance(e, dict)]
        message = "invalid request: " + ("; ".join(parts) or exc.detail)
    else:
        message = exc.detail
    return error_response(request, status, message, exc.headers)


DISK_FULL = ("the box's disk is full, so nothing was stored: free space on it (`edgewatch status` says how "
             "much is left; `edgewatch models remove NAME` drops a model you do not use), then try again")


def handle_internal_error(request: Request, exc: Exception) -> Response:
    if disk_full(exc):  # 507 Insufficient Storage: the request was fine, the box has no room for it
        return error_response(request, 507, DISK_FULL)
    log.exception("internal error on %s %s", printable(request.method, 16), printable(request.url.path))
    return error_response(request, 500, f"internal error ({type(exc).__name__}); the daemon log has details")
