"""SIGHUP (``systemctl reload edgewatch``): read the config again and apply what can change live.

Each module's settings (detection: its section and the backend), log level, cameras and the MQTT
connection change in place; the listening address, data and cache directories and the inference
pool need a restart, and the log says so. A config that does not validate is refused and the daemon keeps its current one.
"""

from __future__ import annotations

import asyncio
import logging

from edgewatch.daemon.config import ConfigError, Settings, load_settings
from edgewatch.daemon.mqtt.link import start_link
from edgewatch.daemon.services import Services

log = logging.getLogger(__name__)

NEEDS_RESTART = ("server", "data_dir", "cache_dir", "inference")


async def reload_config(services: Services) -> bool:
    """Re-read the config file and the environment; True when the new config was applied."""
    old, config_file = services.config, services.config_file
    try:
        new = await asyncio.to_thread(load_settings, config_file)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return False
    logging.getLogger().setLevel(new.log_level.upper())
    logging.getLogger("edgewatch").setLevel(new.log_level.upper())

    for module in services.modules.values():
        if module.config_changed(old, new):
            module.config = new
            saved = services.settings_store.module(module.module_id)
            await asyncio.to_thread(module.apply, module.settings_from(new, saved))
            log.info("reload: %s settings applied (%s)", module.module_id, module.status().summary)

    if (new.mqtt, new.node_id) != (old.mqtt, old.node_id):
        await _replace_mqtt(services, new)

    changed = await services.cameras.reconfigure(new.cameras) if services.cameras else []
    if changed:
        log.info("reload: cameras restarted, added or removed: %s", ", ".join(changed))

    later = [key for key in NEEDS_RESTART if getattr(new, key) != getattr(old, key)]
    if later:
        log.warning("reload: %s changed; restart the service to apply (systemctl restart edgewatch)",
                    ", ".join(later))
        for key in later:  # keep what is running, so the API reports what is in effect
            new = new.model_copy(update={key: getattr(old, key)})
    services.config = new
    log.info("configuration reloaded from %s", config_file or "the environment")
    return True


async def _replace_mqtt(services: Services, config: Settings) -> None:
    old = services.mqtt
    if old is not None:
        await asyncio.to_thread(old.stop)
    link = services.mqtt = start_link(config, services.modules, services.queue)
    if services.cameras is not None:
        services.cameras.set_sink(link)
