"""Talking to systemd: readiness, status lines, reload/stop notices and the watchdog.

Uses systemd-python's ``sd_notify`` (Debian's python3-systemd, or the ``systemd`` extra). With no
``NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) every call does nothing, so the
daemon runs unchanged in a terminal or a container.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable

log = logging.getLogger(__name__)


class Notifier:
    """``sd_notify`` messages; a no-op outside systemd."""

    def __init__(self) -> None:
        self._send: Callable[[str], object] | None = None
        if not os.environ.get("NOTIFY_SOCKET"):
            return
        try:
            from systemd import daemon as sd_daemon
        except ImportError:
            log.error("systemd expects readiness notifications (NOTIFY_SOCKET is set) but systemd-python is "
                      "missing: install Debian's python3-systemd (the .deb links it into /opt/edgewatch) or "
                      "`pip install 'edgewatch[systemd]'`; otherwise use Type=exec in the unit")
            return
        self._send = sd_daemon.notify

    @property
    def enabled(self) -> bool:
        return self._send is not None

    def notify(self, *fields: str) -> None:
        if self._send is not None:
            self._send("\n".join(fields))

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (>= 253) match this notice to the reload it asked for
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}",
                    "STATUS=reloading the configuration")

    def stopping(self, status: str = "stopping: finishing requests in flight") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def extend_timeout(self, seconds: float, status: str) -> None:
        """Ask for more start-up time (e.g. a long first model conversion)."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}", f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def watchdog_trigger(self, why: str) -> None:
        """Tell systemd the service is hung: it runs the watchdog action (restart) at once."""
        self.notify(f"STATUS=hung: {why}", "WATCHDOG=trigger")


def watchdog_interval() -> float | None:
    """Half of ``WATCHDOG_USEC`` in seconds, or None when no watchdog is set for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


async def run_watchdog(notifier: Notifier, interval: float, stuck: Callable[[], str | None]) -> None:
    """Ping every ``interval`` s from the event loop while ``stuck()`` finds nothing wrong.

    A blocked event loop stops the pings by itself; a stuck inference worker is reported by
    ``stuck()``, and then the pings stop and systemd is told, so it restarts the daemon.
    """
    triggered = False
    while True:
        why = stuck()
        if why is None:
            notifier.watchdog()
            triggered = False
        elif not triggered:
            log.error("watchdog: %s; asking systemd to restart the daemon", why)
            notifier.watchdog_trigger(why)
            triggered = True
        await asyncio.sleep(interval)
