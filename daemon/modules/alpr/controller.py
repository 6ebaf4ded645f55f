"""REST for the plate reader: /v1/vision/alpr and the legacy /v1/image/alpr (CodeProject.AI's License
Plate Reader): the image in the part ``upload`` (or ``image``, or the first file part), optional
``min_confidence``."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import MIN_CONFIDENCE, file_part, multipart_form
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.alpr import usecase
from edgewatch.daemon.modules.alpr.module import MODULE_ID, AlprModule
from edgewatch.daemon.modules.alpr.schemas import AlprResponse
from edgewatch.daemon.services import ServicesDep

SUMMARY = ("Read licence plates: predictions carry plate (A-Z, 0-9), label 'Plate: <text>', confidence and "
           "the box; the image in 'upload'")


FORM = multipart_form(("upload",), upload=file_part("the snapshot with the plates"), min_confidence=MIN_CONFIDENCE)


async def _read(request: Request, services: ServicesDep) -> AlprResponse:
    form = await read_form(request, require_form_type=True)
    module: AlprModule = services.modules[MODULE_ID]  # type: ignore[assignment]
    return await usecase.read_image(module, services.queue, form.image("upload"), form.fields.get("min_confidence"),
                                    received_at(request))


class AlprController(Controller):
    path = "/v1/vision"
    tags = ["vision"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/alpr", status_code=200, opt={"command": usecase.COMMAND}, summary=SUMMARY, operation_class=FORM)
    async def alpr(self, request: Request, services: ServicesDep) -> AlprResponse:
        return await _read(request, services)


class LegacyAlprController(Controller):
    path = "/v1/image"
    tags = ["image"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/alpr", status_code=200, opt={"command": usecase.COMMAND}, summary=SUMMARY + " (legacy route)",
          operation_class=FORM)
    async def alpr(self, request: Request, services: ServicesDep) -> AlprResponse:
        return await _read(request, services)
