"""Who may call what: API keys with a scope, checked once for every module's routes.

Each route says what it needs in its ``opt["scope"]``:

- ``public``: anyone (the web page, the API docs, ``/v1/status/ping``);
- ``detect``: the inference endpoints NVRs call. Open while no detect key is configured (drop-in
  for CodeProject.AI, which has no keys; an admin key alone does not close them, so adding one never
  locks out an NVR that cannot send keys); once a detect key exists, a key is needed;
- ``admin`` (the default for a route that says nothing): settings, cameras, faces management, the
  log, /metrics. Only an admin key opens them, and while none is configured they answer only
  clients in ``access.trusted_networks`` (this box itself by default);
- ``task`` and ``token``: the task API checks its own keys; an upload URL carries its own token.

Clients in ``access.trusted_networks`` need no key for anything. Others send the key as
``x-api-key``, ``Authorization: Bearer KEY``, or, as DeepStack clients do, the ``api_key`` (or
``admin_key``) form field. Keys are random tokens, so the config keeps only their SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.api.forms import form_fields
from edgewatch.daemon.config import AccessConfig
from edgewatch.daemon.status_report import describe_access

log = logging.getLogger("edgewatch.access")

PREFIX = "sha256:"
SCOPES = ("public", "detect", "admin", "task", "token")
FORM_KEY_FIELDS = ("api_key", "admin_key")  # DeepStack's names
HOW_TO_SEND = "send it as the x-api-key header, as Authorization: Bearer KEY, or as the api_key form field"


def new_key() -> str:
    """A fresh API key: 32 random bytes, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What the config stores for ``key``: ``sha256:<hex>``."""
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def find_key(hashes: dict[str, str], key: str) -> str | None:
    """The name whose stored hash ``key`` has, or None; every entry compared in constant time."""
    given, found = hash_key(key), None
    for name, stored in hashes.items():
        if hmac.compare_digest(given, stored):
            found = name
    return found


def header_key(connection: ASGIConnection) -> str | None:
    """The key sent in ``x-api-key`` or ``Authorization: Bearer``."""
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, value = (connection.headers.get("authorization") or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Decision:
    """Whether a call may go on; ``caller`` names the key (or ``trusted``/``open``), else the refusal."""

    caller: str | None
    status: int = 200
    message: str = ""


def route_scope(handler: BaseRouteHandler, path: str) -> str:
    scope = (handler.opt or {}).get("scope")
    if scope in SCOPES:
        return scope
    # Litestar's own schema routes carry no opt of ours; anything else unmarked is admin.
    return "public" if path == "/schema" or path.startswith("/schema/") else "admin"


def trusted(config: AccessConfig, host: str | None) -> bool:
    try:
        address = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in config.trusted_networks)


def decide(config: AccessConfig, scope: str, host: str | None, key: str | None) -> Decision:
    """What the policy of the module docstring says for a call to a route of ``scope``."""
    if scope not in ("detect", "admin"):
        return Decision("public")
    if trusted(config, host):
        return Decision("trusted")
    admin = {name: k.hash for name, k in config.keys.items() if k.scope == "admin"}
    if scope == "detect" and len(admin) == len(config.keys):  # no detect key
        return Decision("open")
    if scope == "admin" and not admin:
        return Decision(None, 403, "this route (settings, cameras, faces management, log, metrics) answers only "
                                   "on the box itself while no admin key is configured: on the box run `edgewatch "
                                   "keys new NAME --scope admin`, add the lines it prints under access.keys in the "
                                   f"config, reload, and {HOW_TO_SEND}")
    if not key:
        return Decision(None, 401, f"this route needs an API key ({'an admin' if scope == 'admin' else 'a'} key "
                                   f"of access.keys): {HOW_TO_SEND}")
    name = find_key({n: k.hash for n, k in config.keys.items()}, key)
    if name is None:
        return Decision(None, 403, "the API key sent is not one of this box's keys (access.keys in the config); "
                                   "make one on the box with `edgewatch keys new NAME`")
    if scope == "admin" and name not in admin:
        return Decision(None, 403, f"the key {name!r} has scope detect; settings, cameras, faces management, the "
                                   "log and /metrics need a key with scope admin")
    return Decision(name)


async def access_guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Litestar guard for every route: refuses with a JSON 401/403 what :func:`decide` refuses."""
    if connection.scope["type"] != "http" or connection.scope.get("method") == "OPTIONS":
        return  # CORS preflights carry no data and no key
    config: AccessConfig = connection.app.state.services.config.access
    scope = route_scope(handler, connection.scope["path"])
    host = connection.client.host if connection.client else None
    key = header_key(connection)
    decision = decide(config, scope, host, key)
    if decision.status == 401 and isinstance(connection, Request):
        fields = await form_fields(connection, FORM_KEY_FIELDS)
        sent = next((fields[f] for f in FORM_KEY_FIELDS if fields.get(f)), None)
        if sent:
            decision = decide(config, scope, host, sent.strip())
    if decision.caller is None:
        headers = {"WWW-Authenticate": 'Bearer realm="edgewatch"'} if decision.status == 401 else None
        raise ApiError(decision.status, decision.message, headers)
    connection.state.caller = decision.caller


def describe(config: AccessConfig) -> str:
    """One line for the start log: what needs a key (the same words `edgewatch status` prints)."""
    return describe_access(access_summary(config))


def access_summary(config: AccessConfig) -> dict[str, object]:
    """What /v1/status/version says of access (no key, hash or key name)."""
    scopes = {k.scope for k in config.keys.values()}
    return {"detect": "key" if "detect" in scopes else "open",
            "admin": "key" if "admin" in scopes else "trusted only",
            "trusted_networks": [str(n) for n in config.trusted_networks]}
