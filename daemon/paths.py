"""Where edgewatch keeps its data (models, settings) and its caches (packages, conversions)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

SYSTEM_DATA_DIR = Path("/var/lib/edgewatch")
SYSTEM_CACHE_DIR = Path("/var/cache/edgewatch")
SYSTEM_CONFIG_FILE = Path("/etc/edgewatch/config.yaml")
SERVICE_USER = "edgewatch"


def packaged_install() -> bool:
    """The .deb is installed: its service user owns /var/lib/edgewatch. Commands typed in a shell
    (`sudo edgewatch models install`, `edgewatch status`) then use the service's directories."""
    import pwd

    try:
        return SYSTEM_DATA_DIR.stat().st_uid == pwd.getpwnam(SERVICE_USER).pw_uid
    except (OSError, KeyError):
        return False


def running_as_system_service() -> bool:
    """systemd sets INVOCATION_ID for every unit it starts; a system unit runs as root or has StateDirectory."""
    return bool(os.environ.get("INVOCATION_ID")) and (os.geteuid() == 0 or "STATE_DIRECTORY" in os.environ)


def default_data_dir() -> Path:
    if state := os.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
        return Path(state.split(":")[0])
    if running_as_system_service() or packaged_install():
        return SYSTEM_DATA_DIR
    return platformdirs.user_data_path("edgewatch")


def default_cache_dir() -> Path:
    if cache := os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        return Path(cache.split(":")[0])
    if running_as_system_service() or packaged_install():
        return SYSTEM_CACHE_DIR
    return platformdirs.user_cache_path("edgewatch")


def default_config_file() -> Path | None:
    """``config.yaml`` in systemd's ConfigurationDirectory= (/etc/edgewatch for the service), if present."""
    if conf := os.environ.get("CONFIGURATION_DIRECTORY"):
        path = Path(conf.split(":")[0]) / "config.yaml"
        if path.is_file():
            return path
    if packaged_install() and SYSTEM_CONFIG_FILE.is_file():
        return SYSTEM_CONFIG_FILE
    return None


def become_service_user() -> bool:
    """As root on a packaged install, continue as the service user, so what a command writes into
    /var/lib/edgewatch stays the service's to change. True if it switched."""
    import pwd

    if os.geteuid() != 0 or not packaged_install() or "EDGEWATCH_DATA_DIR" in os.environ:
        return False
    user = pwd.getpwnam(SERVICE_USER)
    os.initgroups(SERVICE_USER, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    return True
