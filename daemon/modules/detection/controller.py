"""REST for detection, /v1/vision: the default detector, a named one, or an ipcam preset."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar import Controller, Request, post
from litestar.params import FromPath
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.config import DetectionConfig
from edgewatch.daemon.modules.detection.module import MODULE_ID, MODULE_NAME, DetectionModule
from edgewatch.daemon.modules.detection.usecase import detect_image
from edgewatch.daemon.modules.detection.usecase import model_name as check_name
from edgewatch.daemon.modules.envelope import VisionResponse
from edgewatch.daemon.modules.requests import confidence_value
from edgewatch.daemon.services import ServicesDep
from edgewatch.models.runtime.labels import PRESETS

_IMAGE_FORM = RequestBody(required=True, content={"multipart/form-data": OpenAPIMediaType(schema=Schema(
    type=OpenAPIType.OBJECT,
    required=["image"],
    properties={
        "image": Schema(type=OpenAPIType.STRING, format="binary",
                        description="the snapshot (JPEG, PNG, BMP, WebP); filename and content type optional"),
        "min_confidence": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=1,
                                 description="drop predictions below this confidence (default "
                                             f"{DetectionConfig.model_fields['min_confidence'].default})"),
    },
))})


@dataclass
class ImageFormOperation(Operation):
    """OpenAPI operation documenting the multipart image form the vision handlers parse themselves."""

    def __post_init__(self) -> None:
        self.request_body = _IMAGE_FORM


async def _detect(request: Request, services: ServicesDep, model: str | None, command: str) -> VisionResponse:
    form = await read_form(request)
    image = form.image()
    module = _module(services)
    min_conf = confidence_value(form.fields.get("min_confidence", ""), module.settings.min_confidence)
    return await detect_image(module, services.queue, image, min_conf, model, command, received_at(request))


def _module(services: ServicesDep) -> DetectionModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class CustomListResponse(msgspec.Struct):
    success: bool
    models: list[str]
    message: str
    moduleId: str
    moduleName: str
    command: str
    code: int


class VisionController(Controller):
    path = "/v1/vision"
    tags = ["vision"]
    opt = {"module": MODULE_ID, "scope": "detect"}  # the error handler answers with this module's envelope

    @post("/detection", status_code=200, operation_class=ImageFormOperation, opt={"command": "detect"},
          summary="Detect COCO objects with the default detector")
    async def detection(self, request: Request, services: ServicesDep) -> VisionResponse:
        return await _detect(request, services, None, "detect")

    @post("/custom/list", status_code=200, opt={"command": "list"},
          summary="List the models /v1/vision/custom/{model} accepts")
    async def custom_list(self, services: ServicesDep) -> CustomListResponse:
        models = _module(services).custom_models()
        return CustomListResponse(success=True, models=models, message=f"{len(models)} models", moduleId=MODULE_ID,
                                  moduleName=MODULE_NAME, command="list", code=200)

    @post("/custom", status_code=200, operation_class=ImageFormOperation, opt={"command": "custom"},
          summary="Detect with ipcam-general (as CodeProject.AI does with no model name)")
    async def custom_default(self, request: Request, services: ServicesDep) -> VisionResponse:
        return await _detect(request, services, "ipcam-general", "custom")

    @post("/custom/{model_name:str}", status_code=200, operation_class=ImageFormOperation, opt={"command": "custom"},
          summary="Detect with an installed detector or an ipcam preset (" + ", ".join(sorted(PRESETS)) + ")")
    async def custom(self, request: Request, services: ServicesDep, model_name: FromPath[str]) -> VisionResponse:
        return await _detect(request, services, check_name(model_name), "custom")
