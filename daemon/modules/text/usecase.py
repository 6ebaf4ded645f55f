"""The text use cases: sentiment and summary. Text in, the module's envelope out; what the sender
can fix raises the module errors. Model work runs on the shared inference queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.envelope import envelope_fields
from edgewatch.daemon.modules.errors import BadRequest, TooLarge
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.text.schemas import TextResponse
from edgewatch.daemon.modules.text.sentiment import positive_probability
from edgewatch.models.runtime.summary import summarize as rank
from edgewatch.models.runtime.text import split_sentences

if TYPE_CHECKING:
    from edgewatch.daemon.modules.text.module import TextModule


def answer(module: TextModule, command: str, received_at: float, *, success: bool = True, code: int = 200,
           message: str = "", error: str | None = None, inference_ms: float = 0.0, process_ms: float = 0.0,
           **fields: Any) -> TextResponse:
    """The module's envelope for ``command``, with the text API's ``fields``."""
    return TextResponse(**envelope_fields(module, command, success=success, received_at=received_at, code=code,
                                          message=message, error=error),
                        inferenceMs=round(inference_ms), processMs=round(process_ms), **fields)


def check_text(module: TextModule, text: str | None) -> str:
    """The text to work on; BadRequest or TooLarge say what to send instead."""
    if text is None:
        raise BadRequest("no 'text' field: send the text as a form field named 'text' (multipart/form-data, "
                         "application/x-www-form-urlencoded or JSON)")
    if "\ufffd" in text:
        raise BadRequest("text is not valid UTF-8: send it encoded as UTF-8")
    if not text.strip():
        raise BadRequest("text is empty: send the text to analyse in the 'text' field")
    limit = module.settings.max_text_chars
    if len(text) > limit:
        raise TooLarge(f"text is {len(text)} characters, over the limit of {limit}: send a shorter text, or raise "
                       f"max_text_chars with POST /v1/settings/{module.module_id}")
    return text


def sentence_count(module: TextModule, raw: str | None) -> int:
    """num_sentences as sent (text), or the configured default; BadRequest if not a whole number in range."""
    most = module.settings.max_summary_sentences
    if raw is None or raw.strip() == "":
        return module.settings.summary_sentences
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadRequest(f"num_sentences must be a whole number from 1 to {most}, got {raw[:40]!r}") from None
    if not 1 <= value <= most:
        raise BadRequest(f"num_sentences must be from 1 to {most} (max_summary_sentences), got {value}")
    return value


async def sentiment(module: TextModule, queue: InferenceQueue, text: str | None, received_at: float) -> TextResponse:
    text = check_text(module, text)

    def job() -> tuple[float, float, float]:
        began = time.perf_counter()
        embedder = module.embedder()
        probability, model_s = positive_probability(embedder, module.sentiment_head(embedder), module.vader, text)
        return probability, model_s * 1000, (time.perf_counter() - began) * 1000

    probability, inference_ms, process_ms = await queued(queue, job)
    positive = probability >= 0.5
    return answer(module, "sentiment", received_at, message=f"The text is {'positive' if positive else 'negative'}",
                  inference_ms=inference_ms, process_ms=process_ms, is_positive=positive,
                  positive_probability=round(probability, 4))


async def summarize(module: TextModule, queue: InferenceQueue, text: str | None, num_sentences: str | None,
                    received_at: float) -> TextResponse:
    text, wanted = check_text(module, text), sentence_count(module, num_sentences)

    def job() -> tuple[list[str], int, float, float]:
        began = time.perf_counter()
        sentences = split_sentences(text)
        chosen, model_s = rank(module.embedder(), sentences, wanted)
        return [sentences[i] for i in chosen], len(sentences), model_s * 1000, (time.perf_counter() - began) * 1000

    chosen, total, inference_ms, process_ms = await queued(queue, job)
    message = (f"Summarised {total} sentences in {len(chosen)}" if total > wanted
               else f"The text has {total} sentence(s), not more than the {wanted} asked for: all returned")
    return answer(module, "summarize", received_at, message=message, inference_ms=inference_ms,
                  process_ms=process_ms, summary=" ".join(chosen))
