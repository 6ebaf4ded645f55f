"""SIGHUP (``systemctl reload edgewatch``): read the config again and apply what can change live.

Each module's settings (detection: its section and the backend), log level, cameras and the MQTT
connection change in place; the listening address, data and cache directories and the inference
pool need a restart, and the log says so. A config that does not validate is refused and the daemon keeps its current one.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from litestar import Litestar

from edgewatch.daemon.config import ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

NEEDS_RESTART = ("server", "data_dir", "cache_dir", "inference")


async def reload_config(app: Litestar, config_file: Path | None) -> bool:
    """Re-read ``config_file`` and the environment; True when the new config was applied."""
    old: Settings = app.state.config
    try:
        new = await asyncio.to_thread(load_settings, config_file)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return False
    logging.getLogger().setLevel(new.log_level.upper())
    logging.getLogger("edgewatch").setLevel(new.log_level.upper())

    for module in app.state.modules.values():
        if module.config_changed(old, new):
            module.config = new
            saved = app.state.settings_store.module(module.module_id)
            await asyncio.to_thread(module.apply, module.settings_from(new, saved))
            log.info("reload: %s settings applied (%s)", module.module_id, module.status().summary)

    if (new.mqtt, new.node_id) != (old.mqtt, old.node_id):
        await _replace_mqtt(app, new)

    changed = await app.state.cameras.reconfigure(new.cameras)
    if changed:
        log.info("reload: cameras restarted, added or removed: %s", ", ".join(changed))

    later = [key for key in NEEDS_RESTART if getattr(new, key) != getattr(old, key)]
    if later:
        log.warning("reload: %s changed; restart the service to apply (systemctl restart edgewatch)",
                    ", ".join(later))
        for key in later:  # keep what is running, so the API reports what is in effect
            new = new.model_copy(update={key: getattr(old, key)})
    app.state.config = new
    log.info("configuration reloaded from %s", config_file or "the environment")
    return True


async def _replace_mqtt(app: Litestar, config: Settings) -> None:
    old = app.state.mqtt
    if old is not None:
        await asyncio.to_thread(old.stop)
    from edgewatch.daemon.mqtt.link import start_link

    link = app.state.mqtt = start_link(config, app.state.modules, app.state.queue)
    app.state.cameras.set_sink(link)
