"""REST for super-resolution, /v1/image/superresolution (CodeProject.AI's Super Resolution): the
image in the part ``image``."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import file_part, multipart_form
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.superresolution import usecase
from edgewatch.daemon.modules.superresolution.module import MODULE_ID, SuperResolutionModule
from edgewatch.daemon.modules.superresolution.schemas import SuperResolutionResponse
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> SuperResolutionModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class SuperResolutionController(Controller):
    path = "/v1/image"
    tags = ["image"]
    opt = {"module": MODULE_ID, "scope": "detect"}  # the error handler answers with this module's envelope

    @post("/superresolution", status_code=200, opt={"command": usecase.COMMAND},
          operation_class=multipart_form(("image",), image=file_part()),
          summary="Upscale an image 4x with Real-ESRGAN: imageBase64 is the PNG")
    async def superresolution(self, request: Request, services: ServicesDep) -> SuperResolutionResponse:
        form = await read_form(request, require_form_type=True)
        return await usecase.superresolution(_module(services), services.queue, form.image(), received_at(request))
