"""REST for the task API, under /backprop (so a Backprop client's base URL https://api.backprop.co
becomes http://<box>:32168/backprop): JSON bodies, x-api-key on every route."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import JSONBody

from edgewatch.daemon.modules.taskapi import usecase
from edgewatch.daemon.modules.taskapi.auth import guard
from edgewatch.daemon.modules.taskapi.module import MODULE_ID, TaskApiModule
from edgewatch.daemon.modules.taskapi.schemas import (ImageClassificationBody, ProbabilitiesResponse,
                                                      TextClassificationBody, VectorListResponse, VectoriseBody,
                                                      VectorResponse)
from edgewatch.daemon.services import Services, ServicesDep

PREFIX = "/backprop"


def _module(services: Services) -> TaskApiModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class TaskApiController(Controller):
    path = PREFIX
    tags = ["task API"]
    guards = [guard]
    opt = {"module": MODULE_ID}
    security = [{"ApiKeyAuth": []}]

    @post("/text-vectorisation", status_code=200, opt={"command": "text-vectorisation"},
          summary="Vectorise a string or a list of strings (model english: MiniLM-L6, 384-d unit vectors)")
    async def text_vectorisation(self, data: JSONBody[VectoriseBody], services: ServicesDep) -> VectorResponse | VectorListResponse:
        return await usecase.vectorise(_module(services), services.queue, data)

    @post("/text-classification", status_code=200, opt={"command": "text-classification"},
          summary="Zero-shot text classification by embedding similarity: probabilities per label, summing to 1")
    async def text_classification(self, data: JSONBody[TextClassificationBody], services: ServicesDep) -> ProbabilitiesResponse:
        return await usecase.classify_text(_module(services), services.queue, data)

    @post("/image-classification", status_code=200, opt={"command": "image-classification"},
          summary="Zero-shot image classification: ImageNet classes carried onto your labels; probabilities sum to 1")
    async def image_classification(self, data: JSONBody[ImageClassificationBody], services: ServicesDep) -> ProbabilitiesResponse:
        return await usecase.classify_image(_module(services), services.queue, data)
