"""Run the daemon: logging, the ASGI server, clean shutdown on SIGTERM."""

from __future__ import annotations

import logging

import uvicorn

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(config: Settings) -> None:
    configure_logging(config.log_level)
    log = logging.getLogger("edgewatch")
    log.info("edgewatch starting on %s:%d, data in %s", config.server.host, config.server.port, config.data_dir)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config),
        host=config.server.host,
        port=config.server.port,
        log_level=config.log_level,
        log_config=None,          # keep our logging set-up
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    ))
    server.run()
