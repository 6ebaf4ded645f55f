"""Build the Litestar application: controllers, error handlers, and the objects they share."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

from litestar import Litestar, MediaType, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from edgewatch.backends.registry import probe_all
from edgewatch.daemon import __version__
from edgewatch.daemon.api.errors import ApiError, handle_api_error, handle_http_exception, handle_internal_error
from edgewatch.daemon.api.cameras import CameraController
from edgewatch.daemon.api.settings import SettingsController
from edgewatch.daemon.api.status import LogController, StatusController
from edgewatch.daemon.api.vision import VisionController
from edgewatch.daemon.config import Settings
from edgewatch.daemon.detection import MODULE_ID, DetectionModule
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.logbuffer import LogBuffer
from edgewatch.daemon.module_settings import ModuleSettingsStore
from edgewatch.models.store import ModelStore

log = logging.getLogger("edgewatch")


def stamp_arrival(app: ASGIApp) -> ASGIApp:
    """Record when a request arrived, for analysisRoundTripMs."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["received_at"] = time.perf_counter()  # type: ignore[typeddict-unknown-key]
        await app(scope, receive, send)

    return middleware


@get("/", include_in_schema=False, media_type=MediaType.JSON)
async def root() -> dict[str, object]:
    return {"success": True, "message": f"edgewatch {__version__}: CodeProject.AI-compatible API",
            "schema": "/schema/openapi.json"}


def create_app(config: Settings) -> Litestar:
    log_buffer = LogBuffer()
    logging.getLogger("edgewatch").setLevel(config.log_level.upper())
    logging.getLogger("edgewatch").addHandler(log_buffer)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings_store = ModuleSettingsStore(config.data_dir / "settings.json")
        store = ModelStore(config.models_dir)
        module = DetectionModule(config, store, settings_store.module(MODULE_ID))
        probes = await asyncio.to_thread(probe_all)
        for key, probe in probes.items():
            log.info("backend %s: %s — %s", key, "available" if probe.available else "unavailable", probe.reason)
        await asyncio.to_thread(module.warm_up)
        queue = InferenceQueue(config.inference.workers, config.inference.queue_size)
        app.state.update(config=config, store=store, detection=module, queue=queue, probes=probes,
                         settings_store=settings_store, log_buffer=log_buffer)
        link = None
        if config.mqtt.host:
            from edgewatch.daemon.mqtt.link import MqttLink

            link = MqttLink(config, module, queue, asyncio.get_running_loop())
            link.start()
        else:
            log.info("MQTT off: no broker configured (set mqtt.host in the config or EDGEWATCH_MQTT_HOST)")
        app.state.mqtt = link
        from edgewatch.daemon.pipeline.camera_service import CameraService

        cameras = CameraService(config.cameras, config.data_dir, module, queue, link)
        app.state.cameras = cameras
        await cameras.start()
        try:
            yield
        finally:
            await cameras.stop()
            if link is not None:
                await asyncio.to_thread(link.stop)
            queue.close()
            module.close()
            logging.getLogger("edgewatch").removeHandler(log_buffer)

    return Litestar(
        route_handlers=[root, VisionController, StatusController, LogController, SettingsController, CameraController],
        lifespan=[lifespan],
        middleware=[stamp_arrival],
        request_max_body_size=config.server.max_body_bytes,
        exception_handlers={ApiError: handle_api_error, HTTPException: handle_http_exception,
                            Exception: handle_internal_error},
        openapi_config=OpenAPIConfig(
            title="edgewatch", version=__version__, path="/schema",
            description="CodeProject.AI-compatible detection API served by edgewatch",
            render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()]),
        logging_config=None,  # our handler (configured in server.py) logs synchronously; no listener thread to lose lines
        debug=False,
    )
