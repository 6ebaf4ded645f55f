"""Readings of this host and process that the metrics and the MQTT stats both report: the CPU's
temperature from /sys/class/thermal, the process's resident memory, threads and open
descriptors from /proc, and the room left on the data dir's disk."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
CPU_ZONE_TYPES = ("cpu", "soc", "x86_pkg", "package", "core")  # a zone type naming the processor
PLAUSIBLE_C = (-40.0, 150.0)  # outside it a zone reports a sentinel (-273 °C, 0 from a disabled sensor) or junk
# Below this the data dir's disk is "low": a model install or an upload (tens to hundreds of MB) may
# not fit, though face registrations and settings (KBs) still do.
LOW_DISK_BYTES = 256 * 1024**2


def disk_space(path: Path) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding ``path``; None if it cannot be read."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return usage.free, usage.total


def cpu_temperature(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU's temperature in °C from ``root``'s ``thermal_zone*/temp`` (millidegrees): the
    hottest zone whose ``type`` names the processor (cpu, soc, x86_pkg_temp, …), else the hottest
    zone; None when there is no zone, or none readable with a plausible value."""
    readings: list[tuple[bool, float]] = []
    try:
        zones = sorted(root.glob("thermal_zone*"))
    except OSError:
        return None
    for zone in zones:
        try:
            celsius = int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):  # unreadable, or not a number: this zone says nothing
            continue
        if not PLAUSIBLE_C[0] < celsius < PLAUSIBLE_C[1]:
            continue
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            kind = ""
        readings.append((any(word in kind for word in CPU_ZONE_TYPES), celsius))
    if not readings:
        return None
    cpu = [c for is_cpu, c in readings if is_cpu]
    return round(max(cpu or [c for _, c in readings]), 1)


def proc_status() -> tuple[int | None, int | None]:
    """(resident bytes, threads) of this process."""
    rss = threads = None
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024  # kB
                elif line.startswith(b"Threads:"):
                    threads = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, threads


def open_fds() -> int | None:
    """How many file descriptors this process has open."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
