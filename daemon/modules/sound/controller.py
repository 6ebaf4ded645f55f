"""REST for sound, /v1/sound/classify (CodeProject.AI's Sound Classifier): a WAV in the part ``sound``."""

from __future__ import annotations

from edgewatch.daemon.api.forms import Form, read_form
from edgewatch.daemon.api.openapi_forms import MIN_CONFIDENCE, file_part, multipart_form
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import confidence_value
from edgewatch.daemon.modules.sound import usecase
from edgewatch.daemon.modules.sound.module import MODULE_ID, SoundModule
from edgewatch.daemon.modules.sound.schemas import SoundResponse
from edgewatch.daemon.services import Services, ServicesDep
from litestar import Controller, Request, post


def _module(services: Services) -> SoundModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


def _sound(form: Form) -> bytes:
    """The ``sound`` part; a request without one is told which parts it sent instead."""
    if "sound" in form.files:
        return form.files["sound"]
    if "sound" in form.fields:  # sent without a filename or content type
        return form.fields["sound"].encode("utf-8", "surrogateescape")
    sent = ", ".join(repr(name) for name, _ in form.file_parts)
    raise BadRequest("no 'sound' file in the request" + (f" (it has {sent})" if sent else "") +
                     ": send the WAV recording as multipart/form-data in a part named 'sound'")


class SoundController(Controller):
    path = "/v1/sound"
    tags = ["sound"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/classify", status_code=200, opt={"command": "classify"},
          operation_class=multipart_form(("sound",), sound=file_part("the recording (WAV)"),
                                         min_confidence=MIN_CONFIDENCE),
          summary="Classify a WAV recording: an UrbanSound8K class (label) and the AudioSet label it comes from")
    async def classify(self, request: Request, services: ServicesDep) -> SoundResponse:
        form, module = await read_form(request, require_form_type=True), _module(services)
        min_conf = confidence_value(form.fields.get("min_confidence", ""), module.settings.min_confidence)
        return await usecase.classify(module, services.queue, _sound(form), min_conf, received_at(request))
