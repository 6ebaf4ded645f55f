"""The task API's keys: clients send ``x-api-key``; the config keeps only each key's SHA-256 (keys are
random 32-byte tokens, so a fast hash is the right one: nothing to guess, nothing to stretch).
Missing key → 401, a key that is not one of the box's → 403, as API gateways answer."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.config import TaskApiConfig

PREFIX = "sha256:"
LOCAL = {"127.0.0.1", "::1"}


class KeyError_(Exception):
    """A request the key check refuses: ``status`` 401 (no key) or 403 (a wrong key)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def new_key() -> str:
    """A fresh API key: 32 random bytes, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What the config stores for ``key``: ``sha256:<hex>``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def valid_hash(value: str) -> bool:
    digest = value[len(PREFIX):]
    return value.startswith(PREFIX) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def key_name(config: TaskApiConfig, key: str) -> str | None:
    """The name of the configured key ``key`` is, or None; compared in constant time."""
    found = None
    given = hash_key(key)
    for name, stored in config.keys.items():
        if hmac.compare_digest(given, stored.strip().lower()):
            found = name
    return found


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
    name = key_name(config, key)
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
        connection.state.task_api_caller = check(config, connection.headers.get("x-api-key"), client)
    except KeyError_ as exc:
        raise ApiError(exc.status, exc.message) from None
