"""REST for faces, /v1/vision/face: detect, match, list, register, delete, recognize (CodeProject.AI's
face API; the same fields DeepStack clients send)."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import MIN_CONFIDENCE, file_part, multipart_form, text_part
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.faces import usecase
from edgewatch.daemon.modules.faces.module import MODULE_ID, FacesModule
from edgewatch.daemon.modules.faces.schemas import FaceResponse
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import confidence_value
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> FacesModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class FaceController(Controller):
    path = "/v1/vision/face"
    tags = ["faces"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/", status_code=200, opt={"command": "detect"},
          operation_class=multipart_form(("image",), image=file_part(), min_confidence=MIN_CONFIDENCE),
          summary="Find faces: boxes and confidence")
    async def detect(self, request: Request, services: ServicesDep) -> FaceResponse:
        form, module = await read_form(request), _module(services)
        min_conf = confidence_value(form.fields.get("min_confidence", ""), module.settings.min_confidence)
        return await usecase.detect(module, services.queue, form.image(), min_conf, received_at(request))

    @post("/match", status_code=200, opt={"command": "match"},
          operation_class=multipart_form(("image1", "image2"), image1=file_part(), image2=file_part()),
          summary="How alike the largest faces of image1 and image2 are (similarity 0 to 1)")
    async def match(self, request: Request, services: ServicesDep) -> FaceResponse:
        form = await read_form(request)
        missing = [n for n in ("image1", "image2") if n not in form.files]
        if missing:
            raise BadRequest(f"send both images to compare as file parts 'image1' and 'image2' (missing: "
                             f"{', '.join(missing)})")
        return await usecase.match(_module(services), services.queue, form.files["image1"], form.files["image2"],
                                   received_at(request))

    @post("/list", status_code=200, opt={"command": "list", "scope": "admin"}, summary="The user ids with registered faces")
    async def list_faces(self, request: Request, services: ServicesDep) -> FaceResponse:
        return usecase.list_faces(_module(services), received_at(request))

    @post("/register", status_code=200, opt={"command": "register", "scope": "admin"},
          operation_class=multipart_form(("userid", "image"), userid=text_part("the person's name or id"),
                                         image=file_part("a photo of the person (or image1…imageN)")),
          summary="Register the face in each image (image, or image1…imageN) for userid")
    async def register(self, request: Request, services: ServicesDep) -> FaceResponse:
        form = await read_form(request)
        return await usecase.register(_module(services), services.queue, form.fields.get("userid", ""),
                                      form.images(), received_at(request))

    @post("/delete", status_code=200, opt={"command": "delete", "scope": "admin"},
          operation_class=multipart_form(("userid",), userid=text_part("the user id to delete")),
          summary="Delete userid and all their faces")
    async def delete(self, request: Request, services: ServicesDep) -> FaceResponse:
        form = await read_form(request)
        return usecase.delete(_module(services), form.fields.get("userid", ""), received_at(request))

    @post("/recognize", status_code=200, opt={"command": "recognize"},
          operation_class=multipart_form(("image",), image=file_part(), min_confidence=MIN_CONFIDENCE),
          summary="Find faces and who they are (userid, or 'unknown' below faces.recognition_threshold)")
    async def recognize(self, request: Request, services: ServicesDep) -> FaceResponse:
        form, module = await read_form(request), _module(services)
        min_conf = confidence_value(form.fields.get("min_confidence", ""), module.settings.min_confidence)
        return await usecase.recognize(module, services.queue, form.image(), min_conf, received_at(request))
