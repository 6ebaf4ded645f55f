"""/v1/cameras: list cameras with their live state, add one, remove one (persisted)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath
from multipart import parse_options_header
from pydantic import ValidationError

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.api.openapi_errors import error_spec
from edgewatch.daemon.api.openapi_forms import json_body
from edgewatch.daemon.api.schemas import CameraRemovedResponse, CameraResponse, CamerasResponse, CameraStatus
from edgewatch.daemon.cameras.config import describe, is_network_url
from edgewatch.daemon.config import CameraSettings
from edgewatch.daemon.pipeline.camera_service import CameraError, CameraService
from edgewatch.daemon.services import ServicesDep


def _service(services: ServicesDep) -> CameraService:
    if services.cameras is None:
        raise ApiError(503, "the cameras are starting; retry in a moment")
    return services.cameras


def _status(state: dict[str, Any]) -> CameraStatus:
    return msgspec.convert(state, CameraStatus)


class CameraController(Controller):
    path = "/v1/cameras"
    tags = ["cameras"]
    opt = {"scope": "admin"}

    @get("/", summary="Cameras with their state (connected, fps in/out, last frame age, last error)")
    async def list_cameras(self, services: ServicesDep) -> CamerasResponse:
        return CamerasResponse(success=True, cameras=[_status(s) for s in _service(services).states().values()])

    @post("/", status_code=201, summary="Add a camera (JSON body as in the config file); persisted",
          operation_class=json_body(CameraSettings, "a camera as in the config file; its url rtsp:// or http(s)://"),
          responses={409: error_spec(409)})
    async def add_camera(self, request: Request, services: ServicesDep) -> CameraResponse:
        media_type, _ = parse_options_header(request.headers.get("content-type", ""))
        if media_type != "application/json":  # a form or text/plain post from another site's page
            raise ApiError(415, "send the camera as JSON with the header Content-Type: application/json")
        try:
            entry = CameraSettings.model_validate(json.loads(await request.body() or b"null"))
        except ValueError as exc:
            if isinstance(exc, ValidationError):  # its text would repeat the input (and any password)
                raise ApiError(400, f"invalid camera: {describe(exc)}") from None
            raise ApiError(400, "send the camera as a JSON object, e.g. {\"name\": \"front\", \"url\": \"rtsp://…\"}") from None
        if not is_network_url(entry.url):  # an API caller must not make the daemon read the box's files or devices
            raise ApiError(400, "cameras added through the API must be network cameras (rtsp://, rtsps://, http:// "
                                "or https:// url); a local file or device (/dev/videoN) can only be configured in "
                                "the config file's cameras section")
        try:
            await _service(services).add(entry)
        except CameraError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return CameraResponse(success=True, camera=_status(_service(services).states()[entry.name]))

    @delete("/{name:str}", status_code=200, summary="Remove a camera (and its Home Assistant entities)")
    async def remove_camera(self, services: ServicesDep, name: FromPath[str]) -> CameraRemovedResponse:
        try:
            await _service(services).remove(name)
        except CameraError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return CameraRemovedResponse(success=True, removed=name)
