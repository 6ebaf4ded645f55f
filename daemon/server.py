"""Run the daemon: logging, the ASGI server, systemd readiness, graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

import uvicorn
from litestar import Litestar

from edgewatch.daemon import __version__
from edgewatch.daemon.access import describe as describe_access
from edgewatch.daemon.app import create_app, serving_status
from edgewatch.daemon.config import Settings
from edgewatch.daemon.http_limits import HttpLimits
from edgewatch.daemon.logsetup import configure_logging
from edgewatch.daemon.malloc_tuning import keep_large_blocks
from edgewatch.daemon.services import Services
from edgewatch.daemon.systemd_notify import Notifier

log = logging.getLogger("edgewatch")

DRAIN_S = 10  # requests in flight get this long to finish after SIGTERM


class NotifyingServer(uvicorn.Server):
    """uvicorn's server, telling systemd READY=1 once it listens (models are loaded by then:
    the app's start-up runs first) and STOPPING=1 as soon as a stop is asked for."""

    def __init__(self, config: uvicorn.Config, notifier: Notifier) -> None:
        super().__init__(config)
        self.notifier = notifier

    @property
    def app(self) -> Litestar:
        app = self.config.loaded_app
        while not isinstance(app, Litestar) and hasattr(app, "app"):  # uvicorn wraps the app in middleware
            app = app.app
        return app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await super().startup(sockets)
        if self.started and not self.should_exit:
            app = self.app
            status = serving_status(app)
            self.notifier.ready(status)
            log.info("ready: %s", status)
            log_first_run_hints(app)

    def _on_sighup(self) -> None:
        services = self.app.state.get("services")
        reload = services.reload if services is not None else None
        if reload is None or self.should_exit:
            log.warning("SIGHUP ignored: the daemon is starting or stopping")
            return
        self._reload_task = asyncio.get_running_loop().create_task(reload())

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            self.notifier.stopping()
            log.info("stopping: finishing requests in flight (up to %d s), then saying offline on MQTT", DRAIN_S)
        super().handle_exit(sig, frame)


def log_first_run_hints(app: object) -> None:
    """What `journalctl -u edgewatch` should tell someone who just installed the box."""
    services: Services = app.state.services  # type: ignore[attr-defined]
    config: Settings = services.config
    host = config.server.host
    if host in ("0.0.0.0", "::"):
        host = _lan_address() or socket.gethostname()
    base = f"http://{host}:{config.server.port}"
    log.info("API: %s/v1/vision/detection (CodeProject.AI-compatible); API docs: %s/schema/swagger "
             "(schema: %s/schema/openapi.json)", base, base, base)
    log.info("%s", describe_access(config.access))
    statuses = [m.status() for m in services.modules.values()]
    active = {s.backend for s in statuses}
    for key, probe in services.probes.items():
        if probe.hardware and key not in active:
            log.warning("accelerator found but not used (%s): %s", key, probe.reason)
    for note in (n for s in statuses for n in s.notes):
        log.warning("backend: %s", note)
    if services.mqtt is None:
        log.info("MQTT off: set mqtt.host in the config file (/etc/edgewatch/config.yaml for the .deb) "
                 "or EDGEWATCH_MQTT_HOST for Home Assistant")


def _lan_address() -> str | None:
    """The address other machines reach this box on (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return None


def serve(config: Settings, config_file: Path | None = None) -> None:
    kind = configure_logging(config.log_level)
    keep_large_blocks()
    notifier = Notifier()
    log.info("edgewatch %s starting on %s:%d, data in %s (log: %s%s)", __version__, config.server.host,
             config.server.port, config.data_dir, kind, ", systemd notify on" if notifier.enabled else "")
    limits = HttpLimits.of(config.server)  # slow or idle clients: header/body timeouts, connection limit
    server = NotifyingServer(uvicorn.Config(
        limits.wrap(create_app(config, config_file, notifier)),
        host=config.server.host,
        port=config.server.port,
        log_level=config.log_level,
        log_config=None,          # keep our logging set-up
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=DRAIN_S,
        **limits.uvicorn_options(),  # the protocol with those limits, and timeout_keep_alive
    ), notifier)
    server.run()
