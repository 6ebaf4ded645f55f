"""/v1/vision: object detection with the default detector, a named one, or an ipcam preset."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Controller, Request, post
from litestar.params import FromPath
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from edgewatch.daemon.api.errors import ApiError
from edgewatch.daemon.api.forms import parse_confidence, read_form
from edgewatch.daemon.api.schemas import CustomListResponse, PredictionBody, VisionResponse, envelope, received_at
from edgewatch.daemon.detection import MODULE_ID, MODULE_NAME, DetectionModule, NoModelInstalled, Outcome
from edgewatch.daemon.imaging import ImageError
from edgewatch.daemon.inference_queue import InferenceQueue, QueueFull
from edgewatch.models.labels import PRESETS
from edgewatch.models.manifest import check_model_name
from edgewatch.backends.base import BackendError
from edgewatch.models.store import ModelNotFound

_IMAGE_FORM = RequestBody(required=True, content={"multipart/form-data": OpenAPIMediaType(schema=Schema(
    type=OpenAPIType.OBJECT,
    required=["image"],
    properties={
        "image": Schema(type=OpenAPIType.STRING, format="binary",
                        description="the snapshot (JPEG, PNG, BMP, WebP); filename and content type optional"),
        "min_confidence": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=1,
                                 description="drop predictions below this confidence (default 0.4)"),
    },
))})


@dataclass
class ImageFormOperation(Operation):
    """OpenAPI operation documenting the multipart image form the vision handlers parse themselves."""

    def __post_init__(self) -> None:
        self.request_body = _IMAGE_FORM


async def detect_image(module: DetectionModule, queue: InferenceQueue, max_pixels: int, image: bytes,
                       min_conf: float, model: str | None, command: str, received_at: float) -> VisionResponse:
    """Detect on ``image`` through the shared inference queue (REST and MQTT alike).

    Raises ApiError (status, message saying what to do) for everything a client can cause.
    """
    settings = module.settings

    def job() -> Outcome:
        detector, allowed = module.resolve(model)
        return detector.detect(image, min_conf, settings, max_pixels, allowed)

    try:
        outcome = await queue.run(job)
    except ImageError as exc:
        raise ApiError(400, str(exc)) from None
    except ModelNotFound:
        raise ApiError(404, f"no custom model {model!r}: POST /v1/vision/custom/list lists the models "
                            "this box has; install more with `edgewatch models install`") from None
    except (NoModelInstalled, BackendError) as exc:  # nothing installed, or nothing that loads here
        raise ApiError(503, str(exc)) from None
    except QueueFull as exc:
        raise ApiError(503, f"{exc}: the box is busy, retry shortly",
                       {"Retry-After": str(exc.retry_after)}) from None
    predictions = [PredictionBody(p.label, p.confidence, p.x_min, p.y_min, p.x_max, p.y_max)
                   for p in outcome.predictions]
    message = ("Found " + ", ".join(p.label for p in predictions)) if predictions else "No objects found"
    return envelope(command, success=True, received_at=received_at, module=module, message=message,
                    predictions=predictions, inference_ms=outcome.inference_ms, process_ms=outcome.process_ms,
                    execution_provider=outcome.execution_provider, can_use_gpu=outcome.can_use_gpu)


async def _detect(request: Request, model: str | None, command: str) -> VisionResponse:
    form = await read_form(request)
    image = form.image()
    module: DetectionModule = request.app.state.detection
    min_conf = parse_confidence(form, module.settings.min_confidence)
    return await detect_image(module, request.app.state.queue, request.app.state.config.server.max_image_pixels,
                              image, min_conf, model, command, received_at(request))


class VisionController(Controller):
    path = "/v1/vision"
    tags = ["vision"]

    @post("/detection", status_code=200, operation_class=ImageFormOperation,
          summary="Detect COCO objects with the default detector")
    async def detection(self, request: Request) -> VisionResponse:
        return await _detect(request, None, "detect")

    @post("/custom/list", status_code=200, summary="List the models /v1/vision/custom/{model} accepts")
    async def custom_list(self, request: Request) -> CustomListResponse:
        module: DetectionModule = request.app.state.detection
        models = module.custom_models()
        return CustomListResponse(success=True, models=models, message=f"{len(models)} models", moduleId=MODULE_ID,
                                  moduleName=MODULE_NAME, command="list", code=200)

    @post("/custom", status_code=200, operation_class=ImageFormOperation,
          summary="Detect with ipcam-general (as CodeProject.AI does with no model name)")
    async def custom_default(self, request: Request) -> VisionResponse:
        return await _detect(request, "ipcam-general", "custom")

    @post("/custom/{model_name:str}", status_code=200, operation_class=ImageFormOperation,
          summary="Detect with an installed detector or an ipcam preset (" + ", ".join(sorted(PRESETS)) + ")")
    async def custom(self, request: Request, model_name: FromPath[str]) -> VisionResponse:
        try:
            check_model_name(model_name)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return await _detect(request, model_name, "custom")
