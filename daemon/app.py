"""Build the Litestar application: controllers, error handlers, and the objects they share."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from pathlib import Path
from contextlib import asynccontextmanager
from typing import AsyncIterator

import msgspec
from litestar import Litestar, MediaType, Request, Response, get
from litestar.di import Provide
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from edgewatch.backends.registry import probe_all
from edgewatch.daemon import __version__
from edgewatch.daemon.access import access_guard
from edgewatch.daemon.api.browser_guard import BrowserGuard, browser_guard
from edgewatch.daemon.api.errors import (ApiError, handle_api_error, handle_http_exception, handle_internal_error,
                                         handle_request_error)
from edgewatch.daemon.api.cameras import CameraController
from edgewatch.daemon.api.metrics import scrape_metrics
from edgewatch.daemon.api.openapi_errors import document_errors
from edgewatch.daemon.api.route_fixes import fix_options_allow
from edgewatch.daemon.api.settings import SettingsController
from edgewatch.daemon.api.status import LogController, StatusController
from edgewatch.daemon.api.training import TrainingController
from edgewatch.daemon.config import Settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.logbuffer import LogBuffer
from edgewatch.daemon.logsetup import request_id
from edgewatch.daemon.metrics import Metrics, count_response
from edgewatch.daemon.module_settings import ModuleSettingsStore
from edgewatch.daemon.modules import MODULES
from edgewatch.daemon.modules.alpr.module import MODULE_ID as ALPR
from edgewatch.daemon.modules.detection import MODULE_ID as DETECTION
from edgewatch.daemon.modules.faces.module import MODULE_ID as FACES
from edgewatch.daemon.modules.errors import RequestError
from edgewatch.daemon.mqtt.link import start_link
from edgewatch.daemon.pipeline.camera_service import CameraService
from edgewatch.daemon.redaction import register_secret
from edgewatch.daemon.reload import reload_config
from edgewatch.daemon.services import Services, provide_services
from edgewatch.daemon.systemd_notify import Notifier, run_watchdog, watchdog_interval
from edgewatch.daemon.web import page_response, wants_page, web_routes
from edgewatch.models.store import ModelStore

log = logging.getLogger("edgewatch")


_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def stamp_arrival(app: ASGIApp) -> ASGIApp:
    """Record when a request arrived (for analysisRoundTripMs) and give it an id: the client's
    X-Request-ID when it sends a sane one, else a new one; echoed in the answer and put in the log."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        scope.setdefault("state", {})["received_at"] = time.perf_counter()  # type: ignore[typeddict-unknown-key]
        sent = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        rid = sent if _CLIENT_ID.match(sent) else uuid.uuid4().hex[:12]
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)

    return middleware


def serving_status(app: Litestar) -> str:
    """One line for systemd's STATUS= and the start log: port, what each module runs with."""
    services: Services = app.state.services
    what = "; ".join(m.status().summary for m in services.modules.values())
    cameras = len(services.cameras.running) if services.cameras else 0
    mqtt = "MQTT on" if services.mqtt is not None else "MQTT off"
    return f"serving on :{services.config.server.port} with {what}; {cameras} camera(s); {mqtt}"


def _start_watchdog(services: Services, notifier: Notifier) -> asyncio.Task | None:
    interval = watchdog_interval()
    if interval is None or not notifier.enabled:
        return None
    hang_after = services.config.inference.hang_after_s or interval  # hung → trigger within WatchdogSec

    def stuck() -> str | None:
        if any(m.loading for m in services.modules.values()):
            return None  # loading a model may take long (a TensorRT engine build), and is not a hang
        running = services.queue.longest_running_s()
        if running > hang_after:
            return f"an inference has run for {running:.0f} s (limit {hang_after:.0f} s)"
        return None

    log.info("systemd watchdog: pinging every %.1f s; an inference running over %.0f s counts as hung",
             interval, hang_after)
    return asyncio.get_running_loop().create_task(run_watchdog(notifier, interval, stuck))


class RootResponse(msgspec.Struct):
    success: bool
    message: str
    schema: str  # where the OpenAPI schema is
    docs: str    # where the Swagger UI is


@get("/", include_in_schema=False, media_type=MediaType.JSON, opt={"scope": "public"},
     response_headers={"Vary": "Accept"})
async def root(request: Request) -> RootResponse | Response:
    if wants_page(request):  # a browser: the web page (daemon/web); API clients get this JSON as before
        return page_response()
    return RootResponse(success=True, message=f"edgewatch {__version__}: CodeProject.AI-compatible API",
                        schema="/schema/openapi.json", docs="/schema/swagger")


DOCS_ASSETS = "/schema/assets"  # Swagger UI 5's files, from the swagger-ui-bundle-v2 package: no CDN


def swagger_offline() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                               standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                               favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>")


def create_app(config: Settings, config_file: Path | None = None, notifier: Notifier | None = None) -> Litestar:
    """The application; ``config_file`` is re-read on SIGHUP, ``notifier`` tells systemd what happens."""
    register_secret(config.mqtt.password)
    log_buffer = LogBuffer()
    logging.getLogger("edgewatch").setLevel(config.log_level.upper())
    logging.getLogger("edgewatch").addHandler(log_buffer)
    notifier = notifier or Notifier()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        settings_store = ModuleSettingsStore(config.data_dir / "settings.json")
        store = ModelStore(config.models_dir)
        modules = {cls.module_id: cls(config, store, settings_store.module(cls.module_id)) for cls in MODULES}
        services = app.state.services = Services(
            config=config, store=store, settings_store=settings_store, log_buffer=log_buffer, modules=modules,
            queue=InferenceQueue(config.inference.workers, config.inference.queue_size), config_file=config_file)
        services.metrics = Metrics(services)
        watchdog = _start_watchdog(services, notifier)
        notifier.status("probing accelerators")
        services.probes = await asyncio.to_thread(probe_all)
        for key, probe in services.probes.items():
            log.info("backend %s: %s — %s", key, "available" if probe.available else "unavailable", probe.reason)
        for module in modules.values():
            notifier.status(module.start_message())
            await asyncio.to_thread(module.start)
        services.mqtt = start_link(config, modules, services.queue)
        cameras = services.cameras = CameraService(config.cameras, config.data_dir, modules[DETECTION], services.queue,
                                                   services.mqtt, config.max_cameras, modules.get(FACES),
                                                   modules.get(ALPR))
        await cameras.start()

        async def reload() -> None:
            """What SIGHUP does (the server wires the signal: only the main thread may)."""
            notifier.reloading()
            try:
                await reload_config(services)
            except Exception:  # a reload must never take the daemon down
                log.exception("reload failed; the daemon keeps running")
            notifier.ready(serving_status(app))

        services.reload = reload
        try:
            yield
        finally:
            services.reload = None
            await cameras.stop()
            if services.mqtt is not None:
                await asyncio.to_thread(services.mqtt.stop)
            services.queue.close()
            for module in modules.values():
                module.close()
            if watchdog is not None:
                watchdog.cancel()
            logging.getLogger("edgewatch").removeHandler(log_buffer)

    app = Litestar(
        route_handlers=[root, StatusController, LogController, SettingsController, CameraController, TrainingController,
                        *(controller for cls in MODULES for controller in cls.controllers()), scrape_metrics,
                        create_static_files_router(DOCS_ASSETS, [swagger_ui_path], include_in_schema=False),
                        *web_routes()],
        lifespan=[lifespan],
        guards=[access_guard],  # every route's opt["scope"]: public, detect, admin (daemon/access.py)
        before_send=[count_response],  # /metrics: every answer counted, an unknown route's too
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        middleware=[stamp_arrival, browser_guard(BrowserGuard(config.server.allowed_hosts, config.server.allowed_origins,
                                                              config.node_id))],
        cors_config=CORSConfig(allow_origins=config.server.allowed_origins) if config.server.allowed_origins else None,
        request_max_body_size=config.server.max_body_bytes,
        exception_handlers={ApiError: handle_api_error, RequestError: handle_request_error,
                            HTTPException: handle_http_exception, Exception: handle_internal_error},
        openapi_config=OpenAPIConfig(
            title="edgewatch", version=__version__, path="/schema",
            components=Components(security_schemes={
                "ApiKeyAuth": SecurityScheme(
                    type="apiKey", name="x-api-key", security_scheme_in="header",
                    description="access.keys (edgewatch keys new NAME --scope detect|admin); the task API's own "
                                "keys under /backprop (edgewatch task-api new-key NAME)"),
                "BearerAuth": SecurityScheme(type="http", scheme="bearer",
                                             description="the same keys as Authorization: Bearer KEY")}),
            description="CodeProject.AI-compatible detection API served by edgewatch",
            render_plugins=[JsonRenderPlugin(), YamlRenderPlugin(), swagger_offline()]),
        logging_config=None,  # our handler (configured in server.py) logs synchronously; no listener thread to lose lines
        debug=False,
    )
    document_errors(app, MODULES)  # every route's error answers in the OpenAPI schema
    fix_options_allow(app)  # OPTIONS lists every method of a path (a Litestar 2 bug)
    return app
