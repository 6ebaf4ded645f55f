"""What a module raises when it cannot serve a request: transport-independent, each with the
status REST answers with (MQTT puts it in the error envelope's ``code``) and a message that says
what to do."""

from __future__ import annotations


class RequestError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after  # seconds, for a refusal that will pass (503 + Retry-After)


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class TooLarge(RequestError):
    status = 413


class Unavailable(RequestError):
    """Nothing to serve it with now (no model installed or loadable, the queue full)."""

    status = 503
