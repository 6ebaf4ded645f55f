"""REST for the task API, under /backprop (so a Backprop client's base URL https://api.backprop.co
becomes http://<box>:32168/backprop): JSON bodies, x-api-key on every route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Union

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from edgewatch.daemon.api.openapi_errors import error_spec
from edgewatch.daemon.modules.taskapi import usecase
from edgewatch.daemon.modules.taskapi.auth import guard
from edgewatch.daemon.modules.taskapi.module import MODULE_ID, TaskApiModule
from edgewatch.daemon.modules.errors import BadRequest, NotFound, TooLarge
from edgewatch.daemon.modules.taskapi.schemas import (AnswerResponse, EmotionResponse, GenerationBody, Message, ModelInfo,
                                                      OutputResponse, QABody, UploadUrlBody, ImageClassificationBody, ProbabilitiesResponse,
                                                      TextBody, TextClassificationBody, VectorListResponse,
                                                      VectoriseBody, VectorResponse)
from edgewatch.daemon.services import Services, ServicesDep

PREFIX = "/backprop"
UPLOADS = "/uploads"  # PUT target of the URLs /upload-url hands out: the URL's token is the authorisation


# the spec's ModelResponse404 (a bare JSON string); {"message": …} while the task API is off
MODEL_404 = error_spec(404, "No uploaded model of that name (a JSON string), or the task API is off", Union[str, Message])


def _not_found(exc: NotFound) -> Response[bytes]:
    """The spec's ModelResponse404: a bare JSON string, "model <name> not found"."""
    return Response(msgspec.json.encode(exc.message), status_code=404, media_type=MediaType.JSON)


def _module(services: Services) -> TaskApiModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


class TaskApiController(Controller):
    path = PREFIX
    tags = ["task API"]
    guards = [guard]
    opt = {"module": MODULE_ID, "scope": "task"}  # its own keys (taskapi/auth.py)
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

    @post("/emotion", status_code=200, opt={"command": "emotion"},
          summary="Emotions of a text or texts (iris-emotion: joy, fear, anger, sadness, love, surprise)")
    async def emotion(self, data: JSONBody[TextBody], services: ServicesDep) -> EmotionResponse:
        return await usecase.emotion(_module(services), services.queue, data)

    @get("/models", summary="The global models (the store's, by the names requests use) and the uploaded ones",
         opt={"command": "models"})
    async def models(self, services: ServicesDep, include_global: FromQuery[bool] = True) -> list[ModelInfo]:
        module = _module(services)
        user = [msgspec.convert(m, ModelInfo) for m in module.uploads.list()]
        return ([*module.global_models(), *user] if include_global else user)

    @get("/models/{model:str}", summary="An uploaded model (global models cannot be queried, as in the spec)",
         opt={"command": "model"}, responses={404: MODEL_404})
    async def model(self, services: ServicesDep, model: FromPath[str]) -> Response:
        try:
            return Response(_module(services).uploads.get(model))
        except NotFound as exc:
            return _not_found(exc)

    @delete("/models/{model:str}", status_code=200, summary="Delete an uploaded model", opt={"command": "model"},
            responses={404: MODEL_404})
    async def delete_model(self, services: ServicesDep, model: FromPath[str]) -> Response:
        try:
            _module(services).uploads.delete(model)
        except NotFound as exc:
            return _not_found(exc)
        return Response(b"null", status_code=200, media_type=MediaType.JSON)

    @post("/upload-url", status_code=200, opt={"command": "upload-url"}, media_type=MediaType.JSON,
          summary="(BETA) An upload URL on this box, valid for an hour: PUT the model's zip there")
    async def upload_url(self, request: Request, data: JSONBody[UploadUrlBody], services: ServicesDep) -> Response[bytes]:
        token = _module(services).uploads.upload_token(data.model_name)
        # a JSON string, as the spec answers (Litestar would send a bare str as text)
        return Response(msgspec.json.encode(f"{str(request.base_url).rstrip('/')}{PREFIX}{UPLOADS}/{token}"),
                        media_type=MediaType.JSON)

    @post("/text-generation", status_code=200, opt={"command": "text-generation"},
          summary="Continue a text (or texts) with the installed language model; stream: true answers server-sent events")
    async def text_generation(self, data: JSONBody[GenerationBody], services: ServicesDep) -> Response:
        module = _module(services)
        if data.stream:
            return stream_generation(module, data)
        return Response(await usecase.generate(module, services.queue, data))

    @post("/summarisation", status_code=200, opt={"command": "summarisation"},
          summary="Summarise a text or texts with the installed language model")
    async def summarisation(self, data: JSONBody[TextBody], services: ServicesDep) -> OutputResponse:
        return await usecase.summarise(_module(services), services.queue, data)

    @post("/qa", status_code=200, opt={"command": "qa"}, responses={501: error_spec(501, body=Message)},
          summary="Answer a question from a context (generative, with the installed language model); 'unknown' if not there")
    async def qa(self, data: JSONBody[QABody], services: ServicesDep) -> AnswerResponse:
        return await usecase.answer(_module(services), services.queue, data)


class TaskUploadController(Controller):
    """The PUT end of an upload URL: no x-api-key (a URL from /upload-url carries its own token, as a
    presigned URL does); the body is the zip."""

    path = PREFIX + UPLOADS
    tags = ["task API"]
    opt = {"module": MODULE_ID, "scope": "token"}  # the URL carries its token

    @put("/{token:str}", status_code=200, opt={"command": "upload"}, request_max_body_size=None,
         summary="Upload a model zip (model.bin, config.json, requirements.txt) to a URL from /upload-url")
    async def upload(self, request: Request, services: ServicesDep, token: FromPath[str]) -> ModelInfo:
        module = _module(services)
        name = module.uploads.take(token)
        limit = module.settings.max_upload_bytes
        path = module.uploads.incoming()
        try:  # streamed to disk: a model zip can be gigabytes, a Pi's memory is not
            size = 0
            with open(path, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"the upload is over task_api.max_upload_bytes ({limit} bytes): raise it in "
                                       "the config, or upload a smaller model")
                    await asyncio.to_thread(out.write, chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        info = await asyncio.to_thread(module.uploads.receive, name, path)
        return msgspec.convert(info, ModelInfo)


def stream_generation(module: TaskApiModule, body: GenerationBody) -> ServerSentEvent:
    """``stream: true``: one ``token`` event per piece of text as it is generated, then one ``done``
    event with the whole ``output`` (the prompt and its continuation) and the figures. A client that
    goes away stops the generation."""
    name = usecase.generation_model(module, body.model)
    if not isinstance(body.text, str):
        raise BadRequest("stream: true takes one text, not a list")
    params = usecase.sampling(module, body)
    if usecase.generation_count(body) != 1:
        raise BadRequest("stream: true makes one generation: leave num_generations out or send 1")
    generator = module.generator(name)  # Unavailable (503) before the stream starts, if not installed

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        stream = generator.stream(body.text, **params)
        try:
            while True:
                piece = await asyncio.to_thread(next, stream, None)
                if piece is None:
                    break
                yield ServerSentEventMessage(data=msgspec.json.encode({"text": piece}).decode(), event="token")
            result = stream.result
            done = {"output": body.text + (result.text if result else ""), "model": generator.manifest.name,
                    "finish_reason": result.finish_reason if result else "stop",
                    "completion_tokens": result.completion_tokens if result else 0,
                    "tokens_per_second": round(result.tokens_per_second, 1) if result else 0.0}
            yield ServerSentEventMessage(data=msgspec.json.encode(done).decode(), event="done")
        finally:  # done, or the client left early: llama.cpp stops within a token (closing joins its thread: not here)
            asyncio.get_running_loop().run_in_executor(None, stream.close)

    return ServerSentEvent(events())
