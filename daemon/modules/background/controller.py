"""REST for background removal, /v1/image/removebackground (CodeProject.AI's Background Remover):
the image in the part ``image``, ``use_alphamatting`` optional."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import file_part, multipart_form, text_part
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.background import usecase
from edgewatch.daemon.modules.background.module import MODULE_ID, BackgroundModule
from edgewatch.daemon.modules.background.schemas import BackgroundResponse
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> BackgroundModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class BackgroundController(Controller):
    path = "/v1/image"
    tags = ["image"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/removebackground", status_code=200, opt={"command": usecase.COMMAND},
          operation_class=multipart_form(("image",), image=file_part(), use_alphamatting=text_part(
              "true to refine the edges (slower); default false", 8)),
          summary="Remove the background: imageBase64 is a PNG whose alpha keeps the main subject "
                  "(use_alphamatting refines its edges)")
    async def remove_background(self, request: Request, services: ServicesDep) -> BackgroundResponse:
        form = await read_form(request, require_form_type=True)
        use_alphamatting = usecase.flag_value(form.fields.get("use_alphamatting"))
        return await usecase.remove_background(_module(services), services.queue, form.image(), use_alphamatting,
                                               received_at(request))
