"""Keep web pages out: a page on any site the user opens must not change the box's state.

Two checks, before any route runs (an ASGI middleware):

- **Origin.** A request that can change something (any method but GET, HEAD, OPTIONS) coming
  from a browser page of another origin is refused: its ``Origin`` is neither the box itself
  (the Host it was sent to) nor one of ``server.allowed_origins``. NVRs and scripts send no
  ``Origin``, so they are not affected. ``Sec-Fetch-Site: cross-site`` is refused the same way.
- **Host** (DNS rebinding). The admin and read-back routes (settings, cameras, log, models)
  answer only when ``Host`` cannot be a rebinding name: an IP address, a name without a dot
  (``orangepi5``, a Docker service), a name under a private-use suffix (``.local``, ``.lan``,
  ``.home.arpa``, ``.internal``…: public DNS cannot serve those), the box's own host names, or
  one of ``server.allowed_hosts``. The NVR routes (``/v1/vision/…``,
  ``/v1/status/…``) answer any Host, so a client that reaches the box by a name of its own
  (a Docker service name, a LAN DNS alias) keeps working.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from urllib.parse import urlsplit

from litestar.types import ASGIApp, Receive, Scope, Send

from edgewatch.daemon.redaction import printable

log = logging.getLogger("edgewatch.api")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PREFIXES = ("/v1/vision/", "/v1/status/", "/schema")  # what NVRs and browsers of the docs call


# Names under these suffixes resolve on the LAN only (mDNS, the router's DNS), never from a
# public name server, so an outside page cannot point one of them at the box.
PRIVATE_SUFFIXES = (".local", ".localhost", ".lan", ".home", ".home.arpa", ".internal", ".localdomain",
                    ".intranet", ".private")


def box_names(node_id: str | None = None) -> set[str]:
    """The box's own names (its FQDN may be under a public domain). ``getfqdn`` may wait on DNS,
    so this runs only for a Host that no cheaper rule accepts, never at start-up."""
    return {name.lower() for name in (socket.gethostname(), socket.getfqdn(), node_id) if name}


def _host_only(host: str) -> str:
    """``example:8080`` → ``example``; ``[::1]:80`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class BrowserGuard:
    """Decides whether a request's Origin and Host are acceptable; see the module docstring."""

    def __init__(self, allowed_hosts: list[str], allowed_origins: list[str], node_id: str | None = None) -> None:
        self.any_host = "*" in allowed_hosts
        self.hosts = {h.lower().strip() for h in allowed_hosts if h != "*"}
        self.node_id = node_id
        self._box_names: set[str] | None = None
        self.origins = {o.lower().rstrip("/") for o in allowed_origins}

    def host_ok(self, host: str) -> bool:
        if self.any_host:
            return True
        name = _host_only(host).rstrip(".")
        if not name or "." not in name or _is_ip(name) or name in self.hosts or name.endswith(PRIVATE_SUFFIXES):
            return True
        if any(h.startswith(".") and name.endswith(h) for h in self.hosts):  # ".lan" allows every *.lan name
            return True
        if self._box_names is None:
            self._box_names = box_names(self.node_id)
        return name in self._box_names

    def origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins or "*" in self.origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host.strip().lower()

    def refusal(self, method: str, path: str, headers: dict[bytes, bytes]) -> str | None:
        """Why this request is refused, or None when it may go on."""
        host = headers.get(b"host", b"").decode("latin-1")
        if not path.startswith(OPEN_PREFIXES) and not self.host_ok(host):
            return (f"Host {printable(host, 100)!r} is not a name of this box (DNS rebinding protection): reach it by "
                    "its IP address or host name, or add the name to server.allowed_hosts "
                    "(EDGEWATCH_SERVER_ALLOWED_HOSTS)")
        if method in SAFE_METHODS:
            return None
        origin = headers.get(b"origin")
        if origin is not None and not self.origin_ok(origin.decode("latin-1"), host):
            return (f"requests from the web page at {printable(origin.decode('latin-1'), 100)!r} may not change this "
                    "box; to allow that origin, add it to server.allowed_origins (EDGEWATCH_SERVER_ALLOWED_ORIGINS)")
        if origin is None and headers.get(b"sec-fetch-site", b"").lower() == b"cross-site":
            return ("requests from another web site may not change this box; to allow a site, add its origin to "
                    "server.allowed_origins (EDGEWATCH_SERVER_ALLOWED_ORIGINS)")
        return None


def browser_guard(guard: BrowserGuard):
    """ASGI middleware factory: refuses with a JSON 403 what :class:`BrowserGuard` refuses."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                why = guard.refusal(scope["method"], scope["path"], dict(scope.get("headers") or ()))
                if why is not None:
                    log.warning("403 on %s %s: %s", printable(scope["method"], 16), printable(scope["path"]), why)
                    body = json.dumps({"success": False, "error": why, "code": 403}).encode()
                    await send({"type": "http.response.start", "status": 403,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            await app(scope, receive, send)

        return guarded

    return middleware
