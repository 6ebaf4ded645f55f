"""REST for the portrait filter, /v1/image/portraitfilter (CodeProject.AI's Portrait Filter): the
image in the part ``image``, ``strength`` (0.0-1.0) optional."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import file_part, multipart_form, number_part
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.portrait import usecase
from edgewatch.daemon.modules.portrait.module import MODULE_ID, PortraitModule
from edgewatch.daemon.modules.portrait.schemas import PortraitResponse
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> PortraitModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class PortraitController(Controller):
    path = "/v1/image"
    tags = ["image"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/portraitfilter", status_code=200, opt={"command": usecase.COMMAND},
          operation_class=multipart_form(("image",), image=file_part(),
                                         strength=number_part("blur strength, 0.0 to 1.0")),
          summary="Blur the background behind the people: filtered_image is a JPEG; strength 0.0-1.0 (default 0.5)")
    async def portrait_filter(self, request: Request, services: ServicesDep) -> PortraitResponse:
        form, module = await read_form(request, require_form_type=True), _module(services)
        strength = usecase.strength_value(form.fields.get("strength"), module.settings.default_strength)
        return await usecase.filter_portrait(module, services.queue, form.image(), strength, received_at(request))
