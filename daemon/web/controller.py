"""The page's routes: the page itself (``GET /`` answers it to browsers, see :func:`wants_page`),
its static files under ``/ui`` (public, like the page: no key), and two read-only routes the page
needs that the API did not have: a camera's latest snapshot with its objects drawn (admin, like
the cameras), and the installed models with their figures (like /v1/status/backends). None of
them is in the OpenAPI schema."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import cv2
import msgspec
from litestar import Controller, MediaType, Request, Response, Router, get
from litestar.params import FromPath
from litestar.static_files import create_static_files_router

from edgewatch.daemon.api.cameras import CameraController
from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.api.status import StatusController
from edgewatch.daemon.modules.detection import MODULE_ID as DETECTION
from edgewatch.daemon.pipeline.annotate import annotated_jpeg
from edgewatch.daemon.pipeline.camera_service import CameraError
from edgewatch.daemon.redaction import printable
from edgewatch.daemon.services import ServicesDep

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
ASSETS = "/ui"              # the page's static files (Alpine.js, its script and style)
SNAPSHOT_MAX_WIDTH = 960    # a camera's snapshot is scaled down to this for the page

# The page loads nothing from elsewhere, runs no inline script, and cannot be framed (clickjacking).
# Alpine.js evaluates its attribute expressions with Function(): 'unsafe-eval'.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; img-src 'self' blob: data:; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def wants_page(request: Request) -> bool:
    """True when the client prefers HTML to JSON (a browser); API clients (``*/*``, JSON or no
    Accept header) get JSON."""
    return request.accept.best_match(["application/json", "text/html"], default="application/json") == "text/html"


@cache
def _page() -> str:
    return (HERE / "page.html").read_text(encoding="utf-8")


def page_response() -> Response:
    return Response(_page(), media_type=MediaType.HTML, headers=PAGE_HEADERS)


# -- a camera's latest snapshot ---------------------------------------------------------------------

def _snapshot_jpeg(frame, tracks: list) -> bytes:
    """The frame with the objects in view drawn, at most SNAPSHOT_MAX_WIDTH wide."""
    h, w = frame.shape[:2]
    if w > SNAPSHOT_MAX_WIDTH:
        scale = SNAPSHOT_MAX_WIDTH / w
        frame = cv2.resize(frame, (SNAPSHOT_MAX_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        tracks = [SimpleNamespace(box=tuple(round(v * scale) for v in t.box), label=t.label, score=t.score)
                  for t in tracks]
    return annotated_jpeg(frame, tracks)


class CameraSnapshotController(Controller):
    """Beside /v1/cameras, with the same guards and options (the cameras' access rules apply)."""

    path = CameraController.path
    guards = CameraController.guards
    opt = CameraController.opt
    tags = CameraController.tags

    @get("/{name:str}/snapshot", include_in_schema=False, media_type="image/jpeg")
    async def snapshot(self, services: ServicesDep, name: FromPath[str]) -> Response:
        cameras = services.cameras
        if cameras is None:
            raise ApiError(503, "the cameras are starting; retry in a moment")
        try:
            latest = cameras.latest(name)  # on the event loop, where the worker changes the tracks
        except CameraError as exc:
            raise ApiError(exc.status, str(exc)) from None
        if latest is None:
            raise ApiError(404, f"camera {printable(name, 64)!r} has no frame yet (GET /v1/cameras says why)")
        jpeg = await asyncio.to_thread(_snapshot_jpeg, *latest)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


# -- installed models with their figures ------------------------------------------------------------

class ModelVariantFigures(msgspec.Struct, omit_defaults=True):
    name: str
    precision: str
    runtime: str
    size_bytes: int
    inference_ms_p50: float | None = None  # measured on this box when the model was installed or chosen
    agreement: float | None = None         # share of fp32 detections this variant reproduces
    ap50_vs_fp32: float | None = None
    platform: str | None = None


class ModelFigures(msgspec.Struct):
    name: str
    title: str
    task: str
    modules: list[str]      # the capability modules that run models of this task
    input: str              # WxH the network is fed
    labels: int
    license: str
    source: str
    default_variant: str
    variants: list[ModelVariantFigures]
    installed_at: str


class ModelsResponse(msgspec.Struct):
    success: bool
    models: list[ModelFigures]
    default_detector: str | None  # what /v1/vision/detection runs, and why
    default_detector_reason: str
    code: int = 200


class ModelsController(Controller):
    """Beside /v1/status/backends, with the same access rules."""

    path = StatusController.path
    guards = StatusController.guards
    opt = StatusController.opt

    @get("/models", include_in_schema=False)
    async def models(self, services: ServicesDep) -> ModelsResponse:
        manifests = await asyncio.to_thread(services.store.list)
        detection = services.modules.get(DETECTION)
        default, reason = detection.model_summary() if detection is not None else (None, "no detection module")
        out = []
        for m in manifests:
            w, h = m.input.size
            out.append(ModelFigures(
                name=m.name, title=m.title, task=m.task, input=f"{w}x{h}", labels=len(m.labels), license=m.license,
                modules=[mod.module_name for mod in services.modules.values() if m.task in mod.model_tasks],
                source=f"{m.source.registry}:{m.source.package}@{m.source.version}",
                default_variant=m.default_variant, installed_at=m.installed_at,
                variants=[ModelVariantFigures(name=k, precision=v.precision, runtime=v.runtime, size_bytes=v.size_bytes,
                                              inference_ms_p50=v.inference_ms_p50, agreement=v.agreement,
                                              ap50_vs_fp32=v.ap50_vs_fp32, platform=v.platform)
                          for k, v in m.variants.items()]))
        return ModelsResponse(success=True, models=out, default_detector=default, default_detector_reason=reason)


def static_router() -> Router:
    return create_static_files_router(ASSETS, [STATIC_DIR], name="web-static", include_in_schema=False,
                                      opt={"scope": "public"})  # like the page: no key needed (daemon/access.py)


def web_routes() -> list:
    """What create_app registers for the page (besides ``/`` itself)."""
    return [static_router(), CameraSnapshotController, ModelsController]
