"""Secrets never leave the box: one redaction for every answer, log line and MQTT message.

:func:`redact` hides passwords in URLs (``rtsp://user:***@host``), the values of secret-named
keys (``password``, ``api_key``, ``token``, ``secret``…) in JSON, YAML, query strings and
Python reprs, and any literal registered with :func:`register_secret` (the broker password,
API keys). :func:`printable` makes client-sent text safe to log: control characters escaped
(a ``%0a`` in a path cannot forge a log line) and length capped.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@  — the password is everything up to the last '@' before the host
_URL_CREDENTIALS = re.compile(r"(?P<head>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/@'\"<>]*)"
                              r":(?P<pw>[^\s'\"<>]*)@")
# A name with a secret word in it. Bounded, and starting where a name starts (as the URL scheme
# above): an unbounded prefix made every log line cost quadratic time in its longest run of name
# characters (2 s for a 10,000-character token, 3 min for a test's 40 such lines).
_SECRET_NAME = (r"[A-Za-z0-9_.-]{0,64}?(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|credential)"
                r"[A-Za-z0-9_.-]{0,64}")
# "password": "x" | 'password': 'x' | password: x | password=x | EDGEWATCH_MQTT_PASSWORD=x
_KEY_VALUE = re.compile(
    r"(?P<key>[\"']?(?<![A-Za-z0-9_.-])" + _SECRET_NAME + r"\\*[\"']?\s*(?:=|:)\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]\)]+)",
    re.IGNORECASE)
_SECRET_KEY = re.compile(r"^" + _SECRET_NAME + r"$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Hide this literal wherever it appears from now on (short values are too ambiguous to hide)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def is_secret_name(name: str) -> bool:
    """Whether a setting or variable of this name holds a secret (``mqtt.password``, ``EDGEWATCH_API_KEYS``…)."""
    return bool(_SECRET_KEY.match(name.rsplit(".", 1)[-1])) or bool(_SECRET_KEY.match(name))


def _mask_value(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with every secret it contains replaced by ``***``."""
    if not text:
        return text
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    out = _KEY_VALUE.sub(_mask_value, out)
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def redact_url(url: str) -> str:
    """A URL with its password hidden; never raises, whatever the URL (a bad port included)."""
    try:
        parts = urlsplit(url)
        userinfo, at, hostport = parts.netloc.rpartition("@")
    except ValueError:
        return redact(url)
    if not at or ":" not in userinfo:
        return redact(url)
    user = userinfo.split(":", 1)[0]
    return redact(urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}")))


def printable(text: object, limit: int = 200) -> str:
    """Client-sent text made safe for a log line or an error message: control characters
    escaped, secrets hidden, at most ``limit`` characters (the rest counted, not shown)."""
    s = str(text)
    extra = len(s) - limit
    if extra > 0:
        s = s[:limit]
    s = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), redact(s))
    return f"{s}… ({extra} more characters)" if extra > 0 else s


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with :func:`redact` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
