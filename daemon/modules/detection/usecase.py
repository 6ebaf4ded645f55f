"""Detection as a use case, the same for REST and MQTT: image bytes and parameters in, the
envelope out; what the sender can fix raises :mod:`edgewatch.daemon.modules.errors`."""

from __future__ import annotations

from edgewatch.backends.base import BackendError
from edgewatch.daemon.imaging import ImageError
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.metrics import observe_inference
from edgewatch.daemon.modules.detection.detector import NoModelInstalled, Outcome
from edgewatch.daemon.modules.detection.module import DetectionModule
from edgewatch.daemon.modules.envelope import VisionResponse, envelope
from edgewatch.daemon.modules.errors import BadRequest, NotFound, Unavailable
from edgewatch.daemon.modules.requests import confidence_value, queued
from edgewatch.models.manifest import check_model_name
from edgewatch.models.store import ModelNotFound


def model_name(name: str) -> str:
    """A model name as sent, checked (BadRequest says what names look like)."""
    try:
        check_model_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return name


async def detect_image(module: DetectionModule, queue: InferenceQueue, image: bytes, min_conf: float,
                       model: str | None, command: str, received_at: float) -> VisionResponse:
    """Detect on ``image`` with ``model`` (None: the default detector; or an ipcam preset) through
    the shared inference queue."""
    settings, max_pixels = module.settings, module.config.server.max_image_pixels

    def job() -> Outcome:
        detector, allowed = module.resolve(model)
        return detector.detect(image, min_conf, settings, max_pixels, allowed)

    try:
        outcome = await queued(queue, job)
    except ImageError as exc:
        raise BadRequest(str(exc)) from None
    except ModelNotFound:
        raise NotFound(f"no custom model {model!r}: POST /v1/vision/custom/list lists the models "
                       "this box has; install more with `edgewatch models install`") from None
    except (NoModelInstalled, BackendError) as exc:  # nothing installed, or nothing that loads here
        raise Unavailable(str(exc)) from None
    observe_inference(queue, module.module_id, model or "default", outcome.inference_ms,  # a name that resolved
                      process_ms=outcome.process_ms, backend=outcome.backend,
                      found=[p.label for p in outcome.predictions])
    predictions = outcome.predictions
    message = ("Found " + ", ".join(p.label for p in predictions)) if predictions else "No objects found"
    return envelope(module, command, success=True, received_at=received_at, message=message,
                    predictions=predictions, inference_ms=outcome.inference_ms, process_ms=outcome.process_ms,
                    execution_provider=outcome.execution_provider, can_use_gpu=outcome.can_use_gpu)


async def detect_job(module: DetectionModule, queue: InferenceQueue, payload: bytes, params: dict[str, str],
                     received_at: float) -> VisionResponse:
    """An MQTT detection job: the payload is the image; ``model`` and ``min_confidence`` come as
    user properties."""
    model = model_name(params["model"]) if params.get("model") else None
    min_conf = confidence_value(params.get("min_confidence", ""), module.settings.min_confidence)
    return await detect_image(module, queue, payload, min_conf, model, "detect", received_at)
