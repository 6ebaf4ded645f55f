"""REST for text, /v1/text: sentiment and summarize (CodeProject.AI's fields: text, num_sentences)."""

from __future__ import annotations

from edgewatch.daemon.api.forms import Form, read_form
from edgewatch.daemon.api.openapi_forms import integer_part, multipart_form, text_part
from edgewatch.daemon.api.schemas import received_at
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.text import usecase
from edgewatch.daemon.modules.text.module import MODULE_ID, TextModule
from edgewatch.daemon.modules.text.schemas import TextResponse
from edgewatch.daemon.services import Services, ServicesDep
from litestar import Controller, Request, post


def _module(services: Services) -> TextModule:
    return services.modules[MODULE_ID]  # type: ignore[return-value]


async def _form(request: Request, module: TextModule) -> Form:
    # urlencoded and JSON bodies may carry the longest text accepted (4 bytes a character at most)
    return await read_form(request, max_small_body=module.settings.max_text_chars * 4 + 4096)


TEXT = text_part("the text (or a text file part)")


def _text(form: Form) -> str | None:
    """The 'text' field, or a 'text' file part (a client that attaches it) decoded as UTF-8."""
    if "text" in form.fields:
        return form.fields["text"]
    if "text" in form.files:
        try:
            return form.files["text"].decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("text is not valid UTF-8: send it encoded as UTF-8") from None
    if form.fields or form.files:
        sent = ", ".join(sorted({*form.fields, *form.files}))
        raise BadRequest(f"no 'text' field (got {sent[:200]}): send the text in a field named 'text'")
    return None


class TextController(Controller):
    path = "/v1/text"
    tags = ["text"]
    opt = {"module": MODULE_ID, "scope": "detect"}  # the error handler answers with this module's envelope

    @post("/sentiment", status_code=200, opt={"command": "sentiment"},
          operation_class=multipart_form(("text",), text=TEXT),
          summary="Whether the text is positive: is_positive, positive_probability (MiniLM embedding + VADER)")
    async def sentiment(self, request: Request, services: ServicesDep) -> TextResponse:
        module = _module(services)
        form = await _form(request, module)
        return await usecase.sentiment(module, services.queue, _text(form), received_at(request))

    @post("/summarize", status_code=200, opt={"command": "summarize"},
          operation_class=multipart_form(("text",), text=TEXT, num_sentences=integer_part("how many sentences", 1)),
          summary="The num_sentences sentences most central to the text, in its order (extractive)")
    async def summarize(self, request: Request, services: ServicesDep) -> TextResponse:
        module = _module(services)
        form = await _form(request, module)
        return await usecase.summarize(module, services.queue, _text(form), form.fields.get("num_sentences"),
                                       received_at(request))
