"""Slow or idle clients cannot exhaust the server: connection limit, header and body timeouts.

uvicorn brings a keep-alive timeout (passed on as is) and ``limit_concurrency``, whose 503 is a
``text/plain`` body that NVR clients cannot parse as the API's JSON envelope; it has no header or
body timeout at all with httptools (a connection that never finishes its headers, or sends its body a
byte a second, is held for ever), and no limit on the size of the headers. What this adds:

- :class:`LimitedHttpProtocol`, uvicorn's httptools protocol with
  - a header deadline: a new connection, or the next request on a kept-alive one from its first
    byte, must finish its request headers within ``header_timeout_s`` (else 408 and close; a
    connection that sent nothing is just closed), in at most ``max_header_bytes`` (else 431);
  - the connection limit: over ``max_connections`` open connections a request is answered a JSON
    503 with ``Retry-After`` and ``Connection: close``; over twice the limit a new connection is
    reset at once, so that a flood cannot use up the process's file descriptors;
  - the same body rule as below for a body still coming after the answer was sent (413, 404: the
    rest is read and dropped, so the connection can be kept), after which it is closed.
- :class:`BodyDeadline`, an ASGI wrapper of ``receive``: while the app reads a request body, the
  next piece must come within ``body_timeout_s``, and after the first ``body_timeout_s`` the body
  must keep coming at ``body_min_bytes_per_s`` on average. Only time spent waiting for the client
  counts (not the app's own work). Too slow: the app answers 408 (its JSON error envelope) and the
  connection is closed.

An idle timeout per piece rather than a total one, so that a big body on a slow link passes: 25 MB
over Wi-Fi at 1 Mbit/s takes 200 s and is never idle; the average rate catches a client that
trickles a byte every few seconds (never idle for long, but never done).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from litestar.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("edgewatch.http")


@dataclass(frozen=True)
class HttpLimits:
    max_connections: int = 100
    keep_alive_s: float = 20.0
    header_timeout_s: float = 10.0
    max_header_bytes: int = 32 * 1024
    body_timeout_s: float = 30.0
    body_min_bytes_per_s: int = 1000

    @classmethod
    def of(cls, server: Any) -> HttpLimits:
        """From the config's ``server`` section."""
        return cls(**{name: getattr(server, name) for name in cls.__dataclass_fields__})

    def wrap(self, app: Any) -> BodyDeadline:
        return BodyDeadline(app, self)

    def uvicorn_options(self) -> dict[str, Any]:
        """For uvicorn.Config: the protocol with these limits, and the keep-alive timeout."""
        protocol = type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": self})
        return {"http": protocol, "timeout_keep_alive": self.keep_alive_s}


class BodyClock:
    """How long the next piece of a body may take: at most ``idle_s``; and in all, ``idle_s`` plus
    one second for every ``min_rate`` bytes received."""

    def __init__(self, idle_s: float, min_rate: int) -> None:
        self.idle_s, self.min_rate = idle_s, min_rate
        self.waited = 0.0
        self.received = 0

    def budget(self) -> float:
        return min(self.idle_s, self.idle_s + self.received / self.min_rate - self.waited)

    def record(self, waited: float, nbytes: int) -> None:
        self.waited += waited
        self.received += nbytes


def _too_slow(limits: HttpLimits) -> str:
    return (f"the request body came too slowly (nothing for {limits.body_timeout_s:g} s, or under "
            f"{limits.body_min_bytes_per_s} bytes/s on average); see server.body_timeout_s")


class BodyTimeout(HTTPException):
    """Raised from ``receive`` inside the app, which answers it with its own 408 envelope."""

    status_code = 408


class BodyDeadline:
    """ASGI wrapper: a request body must keep coming while the app reads it (see the module doc)."""

    def __init__(self, app: Any, limits: HttpLimits) -> None:
        self.app = app  # `app`, so that NotifyingServer finds the Litestar app beneath
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        clock = BodyClock(limits.body_timeout_s, limits.body_min_bytes_per_s)
        state = {"body_done": False, "timed_out": False, "started": False}

        async def timed_receive() -> dict:
            if state["body_done"]:  # waiting for http.disconnect after the body is the app's business
                return await receive()
            budget = clock.budget()
            t0 = time.monotonic()
            try:
                if budget <= 0:
                    raise TimeoutError
                async with asyncio.timeout(budget):
                    message = await receive()
            except TimeoutError:
                state["timed_out"] = True  # the app logs its 408 like any client error
                raise BodyTimeout(detail=_too_slow(limits)) from None
            clock.record(time.monotonic() - t0, len(message.get("body", b"")))
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if state["timed_out"]:  # the rest of the body will not be read: close after the answer
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except BodyTimeout:
            if state["started"]:
                raise
            await send_json(send, 408, _too_slow(limits))


async def send_json(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """The API's neutral error envelope, then close the connection."""
    body = json.dumps({"success": False, "error": message, "code": status}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Quiet:
    """Log refusals at most once a minute with a count (a flood must not flood the journal)."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def note(self, what: str, client: Any = None, level: int = logging.INFO) -> None:
        self.count[what] = self.count.get(what, 0) + 1
        now = time.monotonic()
        if now - self.last.get(what, -self.EVERY_S) >= self.EVERY_S:
            peer = f"{client[0]}:{client[1]}" if client else "?"
            more = f"; {self.count[what]} such since the last line" if self.count[what] > 1 else ""
            log.log(level, "%s (client %s%s)", what, peer, more)
            self.last[what] = now
            self.count[what] = 0


_quiet = _Quiet()


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and size, the connection limit, and a
    bound on draining a body nobody reads (see the module doc). ``limits`` is set by
    :meth:`HttpLimits.uvicorn_options`."""

    limits: HttpLimits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # the next bytes belong to a request's head
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._message_done = False
        self._drain: BodyClock | None = None  # set while dropping the rest of a body after the answer
        self._drain_since = 0.0
        self._drain_timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > 2 * self.limits.max_connections:
            _quiet.note(f"over twice server.max_connections ({self.limits.max_connections}): connection reset",
                        self.client, logging.WARNING)
            transport.abort()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_drain_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
            if self._header_timer is None:
                self._arm_header_timer()
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            _quiet.note("request headers too large: 431", self.client)
            self._refuse(431, f"request headers over {self.limits.max_header_bytes} bytes (server.max_header_bytes)")
        elif self._drain is not None:
            self._drained(len(data))

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._message_done = False
        if self._header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._awaiting_headers = False
        self._header_bytes = 0
        limit = self.limits.max_connections
        if len(self.connections) > limit or len(self.tasks) >= limit:
            _quiet.note(f"over server.max_connections ({limit}): answered 503", self.client, logging.WARNING)
            app, self.app = self.app, _too_many_connections(limit)
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._message_done = True
        self._awaiting_headers = True
        self._header_bytes = 0
        super().on_message_complete()
        if self._drain is not None:  # the rest of an answered request's body is in: keep-alive as usual
            self._drain = None
            self._cancel_drain_timer()
            if self.timeout_keep_alive_task is None and not self.pipeline:
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # then the next request starts now, and reads its own body
        super().on_response_complete()
        if not self._message_done and not pipelined and not self.transport.is_closing():
            # answered before its body was all in (413, 404...): uvicorn reads and drops the rest
            self._drain = BodyClock(self.limits.body_timeout_s, self.limits.body_min_bytes_per_s)
            self._drain_since = time.monotonic()
            self._arm_drain_timer()

    # -- timers ----------------------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # a pipelined request half sent behind a running one: close after it
            return
        if self._header_bytes:
            _quiet.note("request headers not finished in time: 408", self.client)
            self._refuse(408, f"request headers not finished within {self.limits.header_timeout_s:g} s "
                              "(server.header_timeout_s)")
        else:  # never sent a request (or only blank lines): just close
            self.transport.close()

    def _drained(self, nbytes: int) -> None:
        assert self._drain is not None
        self._drain.received += nbytes
        self._arm_drain_timer()

    def _arm_drain_timer(self) -> None:
        self._cancel_drain_timer()
        assert self._drain is not None
        self._drain.waited = time.monotonic() - self._drain_since
        self._drain_timer = self.loop.call_later(max(0.0, self._drain.budget()), self._drain_timeout)

    def _cancel_drain_timer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _drain_timeout(self) -> None:
        self._drain_timer = None
        if self._drain is not None and not self.transport.is_closing():
            _quiet.note("rest of an answered request's body too slow: connection closed", self.client)
            self.transport.close()

    # -- answers ---------------------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer a JSON envelope straight on the transport (no request to hand to the app) and close."""
        self._cancel_header_timer()
        body = json.dumps({"success": False, "error": message, "code": status}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n", b"content-length: ", str(len(body)).encode(), b"\r\n",
                 b"connection: close\r\n\r\n", body]
        self.transport.write(b"".join(head))
        self.transport.close()


def _too_many_connections(limit: int) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send_json(send, 503, f"too many connections (server.max_connections is {limit}); retry shortly",
                        [(b"retry-after", b"1")])
    return app
