"""The task API's keys: clients send ``x-api-key`` (or ``Authorization: Bearer``); the config keeps only
each key's SHA-256, made and compared as :mod:`edgewatch.daemon.access` does for ``access.keys``.
Missing key → 401, a key that is not one of the box's → 403, as API gateways answer."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edgewatch.daemon.access import find_key, hash_key, header_key, new_key
from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.config import TaskApiConfig

__all__ = ["KeyError_", "check", "guard", "hash_key", "new_key"]

LOCAL = {"127.0.0.1", "::1"}


class KeyError_(Exception):
    """A request the key check refuses: ``status`` 401 (no key) or 403 (a wrong key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check(config: TaskApiConfig, key: str | None, client_host: str | None) -> str:
    """Who is calling (a key's name, or ``local`` for an unkeyed call from the box itself); raises
    :class:`KeyError_` saying what to send otherwise."""
    if not config.keys:
        if config.local_without_key and client_host in LOCAL:
            return "local"
        raise KeyError_(401, "this box has no task API keys yet: create one on the box with `edgewatch task-api "
                             "new-key NAME`, add the line it prints under task_api.keys in the config, and send the "
                             "key in the x-api-key header")
    if not key:
        raise KeyError_(401, "send your API key in the x-api-key header")
    name = find_key(config.keys, key)
    if name is None:
        raise KeyError_(403, "Forbidden: the x-api-key is not one of this box's keys (see task_api.keys in the config)")
    return name


def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Litestar guard for the task API's routes: ApiError 404 while it is off, 401/403 as :func:`check`."""
    config = connection.app.state.services.config.task_api
    if not config.enabled:
        raise ApiError(404, "the task API is off on this box: set task_api.enabled: true in the config")
    client = connection.client.host if connection.client else None
    try:
        connection.state.task_api_caller = check(config, header_key(connection), client)
    except KeyError_ as exc:
        raise ApiError(exc.status, exc.message) from None
