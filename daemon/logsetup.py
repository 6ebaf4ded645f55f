"""Logging: structured journald records under systemd, plain lines everywhere else.

Log calls pass context as ``extra={"camera": ..., "model": ...}``; a request's id comes from
:data:`request_id`. In the journal these become the fields ``CAMERA``, ``MODEL`` and
``REQUEST_ID`` (``journalctl -u edgewatch CAMERA=driveway``).
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar

from edgewatch.daemon.redaction import RedactingFilter

request_id: ContextVar[str | None] = ContextVar("edgewatch_request_id", default=None)

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("camera", "model")


class JournalFields(logging.Filter):
    """Copy the context of a record into upper-case attributes, which journald keeps as fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                setattr(record, name.upper(), str(value))
        rid = request_id.get()
        if rid is not None:
            record.REQUEST_ID = rid
        return True


def stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> when stderr is connected to the journal."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def journal_handler() -> logging.Handler | None:
    """A journald handler when running under systemd and systemd-python is importable."""
    if not stderr_is_journal():
        return None
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None
    handler = JournalHandler(SYSLOG_IDENTIFIER="edgewatch")
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # journald adds time and level
    handler.addFilter(JournalFields())
    return handler


def configure_logging(level: str) -> str:
    """Set up the root logger; returns ``journald`` or ``plain``."""
    handler = journal_handler()
    kind = "journald" if handler else "plain"
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(RedactingFilter())  # every line, ours and the libraries', without secrets
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return kind
