"""Where edgewatch keeps its data (models, settings) and its caches (packages, conversions)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

SYSTEM_DATA_DIR = Path("/var/lib/edgewatch")
SYSTEM_CACHE_DIR = Path("/var/cache/edgewatch")


def running_as_system_service() -> bool:
    """systemd sets INVOCATION_ID for every unit it starts; a system unit runs as root or has StateDirectory."""
    return bool(os.environ.get("INVOCATION_ID")) and (os.geteuid() == 0 or "STATE_DIRECTORY" in os.environ)


def default_data_dir() -> Path:
    if state := os.environ.get("STATE_DIRECTORY"):  # systemd StateDirectory=
        return Path(state.split(":")[0])
    if running_as_system_service():
        return SYSTEM_DATA_DIR
    return platformdirs.user_data_path("edgewatch")


def default_cache_dir() -> Path:
    if cache := os.environ.get("CACHE_DIRECTORY"):  # systemd CacheDirectory=
        return Path(cache.split(":")[0])
    if running_as_system_service():
        return SYSTEM_CACHE_DIR
    return platformdirs.user_cache_path("edgewatch")


def default_config_file() -> Path | None:
    """``config.yaml`` in systemd's ConfigurationDirectory= (/etc/edgewatch for the service), if present."""
    if conf := os.environ.get("CONFIGURATION_DIRECTORY"):
        path = Path(conf.split(":")[0]) / "config.yaml"
        if path.is_file():
            return path
    return None
