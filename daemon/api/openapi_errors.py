"""The error answers of every route in the OpenAPI schema, documented once for the whole app.

Every refusal answers the JSON envelope of :mod:`edgewatch.daemon.api.errors`: ``success: false``,
``error`` (what to do) and ``code`` (the HTTP status). A module's routes answer their module's whole
CodeProject.AI envelope (``moduleId``, ``command``… besides those three); a module whose errors
look otherwise (the task API's ``{"message": …}``) is documented with its own error type, and the
browser guard's neutral envelope besides. :func:`document_errors` gives each route the statuses it
can answer, from what the route is: its methods, its access scope, its path parameters, whether a
module serves it. A handler that declares a status itself (``responses=``) keeps its own. A 405 (a
method the path does not have) answers the same envelope, but belongs to no documented operation.
"""

from __future__ import annotations

import logging
import typing
from typing import Literal, Union

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

from edgewatch.daemon.api.browser_guard import OPEN_PREFIXES, SAFE_METHODS

log = logging.getLogger("edgewatch.api")


class ErrorEnvelope(msgspec.Struct):
    """A refused request. A module's routes answer their module's full envelope: these fields and the
    module's own (moduleId, moduleName, command, …)."""

    success: Literal[False]
    error: str   # what went wrong and what to send instead
    code: int    # the HTTP status, repeated for clients that only read the body


WHY = {  # the description of each status, as a client reading the docs needs it
    400: "Bad request: a missing or malformed field, an image that does not decode; `error` says which",
    401: "An API key is needed: send it as x-api-key, Authorization: Bearer KEY, or the api_key form field",
    403: "Refused: a key without the scope this route needs, a setting only the config file may change, or a "
         "browser request from another site or Host name",
    404: "No such item (model, module, camera, user id), or the module is off on this box",
    408: "The request's headers or body did not arrive in time (server limits): send it again, faster",
    409: "Conflicts with what exists (a camera of that name, or max_cameras reached)",
    413: "The body (or the image's pixels) is over the limit (server.max_body_bytes, server.max_image_pixels)",
    415: "Unsupported Content-Type: send multipart/form-data, application/x-www-form-urlencoded or JSON",
    422: "The request is well formed but cannot be processed",
    429: "Too many requests: retry after the Retry-After header's seconds",
    501: "Not available on this box; `error` says what to do instead",
    503: "Busy or not ready (the inference queue full, too many connections, the model not installed or "
         "loading): retry after the Retry-After header's seconds, or install what `error` names",
    507: "The box's disk is full, so nothing was stored: free space on it (`edgewatch status` says how much "
         "is left), then send the request again",
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_statuses(handler: HTTPRouteHandler, path: str) -> set[int]:
    """The error statuses a route can answer besides its handler's own."""
    methods = set(handler.http_methods)
    opt = handler.opt or {}
    scope = opt.get("scope", "admin")
    # parameters and bodies are validated everywhere; a client too slow to send its request gets 408, and
    # one over server.max_connections 503 (edgewatch.daemon.http_limits)
    statuses = {400, 408, 503}
    if scope != "public":
        statuses |= {401, 403}  # access keys (edgewatch.daemon.access), the task API's and upload tokens
    if not (methods <= SAFE_METHODS and path.startswith(OPEN_PREFIXES)):
        statuses.add(403)  # the browser guard: a foreign Host name, or a change from another site's page
    if "{" in path or opt.get("module") or scope in ("task", "token"):
        statuses.add(404)  # an unknown item named in the path or the form; a module that is off
    if methods & BODY_METHODS:
        statuses |= {413, 415}
    if methods - SAFE_METHODS:
        statuses.add(507)  # a write (faces, settings, cameras, models, uploads) that found the disk full
    return statuses  # 503 also: a module's model not installed or its queue full, the daemon still starting


def _error_type(handler: HTTPRouteHandler, module_types: dict[str, type]) -> object:
    """The body type of the route's error answers (see the module docstring)."""
    own = module_types.get((handler.opt or {}).get("module", ""))
    if own is None or not isinstance(own, type) or not issubclass(own, msgspec.Struct):
        return ErrorEnvelope
    if {"success", "error", "code"} <= set(own.__struct_fields__):
        return ErrorEnvelope  # the module's envelope carries the three fields, and answers more
    return Union[own, ErrorEnvelope]  # noqa: UP007 (a type object for the schema generator)


def module_error_types(modules: typing.Iterable[type]) -> dict[str, type]:
    """Each module id's error body type: what its ``error_envelope`` is annotated to return."""
    out: dict[str, type] = {}
    for cls in modules:
        try:
            out[cls.module_id] = typing.get_type_hints(cls.error_envelope)["return"]
        except Exception:  # an unannotated module: its routes get the neutral envelope
            log.debug("no error type for module %s", getattr(cls, "module_id", cls))
    return out


def document_errors(app: Litestar, modules: typing.Iterable[type] = ()) -> None:
    """Add the error answers to every schema-included route of ``app`` (before its schema is built)."""
    module_types = module_error_types(modules)
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            declared = dict(handler.responses or {})
            error_type = _error_type(handler, module_types)
            for status in sorted(error_statuses(handler, route.path_format or "/")):
                if status in declared or status == handler.status_code:
                    continue
                declared[status] = ResponseSpec(data_container=error_type, description=WHY[status],
                                                generate_examples=False)
            handler.responses = declared


def error_spec(status: int, description: str | None = None, body: object = ErrorEnvelope) -> ResponseSpec:
    """One error answer (the neutral envelope unless ``body`` says otherwise), for a handler's
    ``responses=``: a status only that route gives, or a body of its own."""
    return ResponseSpec(data_container=body, description=description or WHY[status], generate_examples=False)
