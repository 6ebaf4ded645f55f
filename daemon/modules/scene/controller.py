"""REST for the scene classifier, /v1/vision/scene (CodeProject.AI's Scene Classifier): the image in
the part ``image``."""

from __future__ import annotations

from litestar import Controller, Request, post

from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.api.openapi_forms import file_part, multipart_form
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.scene import usecase
from edgewatch.daemon.modules.scene.module import MODULE_ID, SceneModule
from edgewatch.daemon.modules.scene.schemas import SceneResponse
from edgewatch.daemon.services import Services, ServicesDep


def _module(services: Services) -> SceneModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class SceneController(Controller):
    path = "/v1/vision"
    tags = ["vision"]
    opt = {"module": MODULE_ID, "scope": "detect"}

    @post("/scene", status_code=200, opt={"command": usecase.COMMAND},
          operation_class=multipart_form(("image",), image=file_part()),
          summary="Classify the scene: label is a Places365 scene name derived from ImageNet classes, or 'unknown'")
    async def scene(self, request: Request, services: ServicesDep) -> SceneResponse:
        form, module = await read_form(request, require_form_type=True), _module(services)
        return await usecase.classify_scene(module, services.queue, form.image(), received_at(request))
