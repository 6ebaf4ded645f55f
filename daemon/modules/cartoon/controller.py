"""REST for the cartooniser, /v1/image/cartoonise (CodeProject.AI's Cartooniser): the image in the part
``image``, the style in ``model`` (optional)."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import file_part, multipart_form, text_part
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.cartoon import usecase
from edgewatch.daemon.modules.cartoon.module import MODULE_ID, CartoonModule
from edgewatch.daemon.modules.cartoon.schemas import CartoonResponse
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> CartoonModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class CartoonController(Controller):
    path = "/v1/image"
    tags = ["image"]
    opt = {"module": MODULE_ID, "scope": "detect"}  # the error handler answers with this module's envelope

    @post("/cartoonise", status_code=200, opt={"command": usecase.COMMAND},
          operation_class=multipart_form(("image",), image=file_part(),
                                         model=text_part("the style (default: the default_style setting)")),
          summary="A painterly style transfer (not an anime GAN): imageBase64 is the PNG; model names the style "
                  "(style0-style25, or celeba_distill, face_paint_512_v1, face_paint_512_v2, paprika mapped to one)")
    async def cartoonise(self, request: Request, services: ServicesDep) -> CartoonResponse:
        form = await read_form(request, require_form_type=True)
        return await usecase.cartoonise(_module(services), services.queue, form.image(), form.fields.get("model"),
                                        received_at(request))
