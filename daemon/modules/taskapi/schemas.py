"""Request and response bodies of the task API, as the spec shapes them: each task takes one item
(a string) or a batch (a list), and answers in kind."""

from __future__ import annotations

from typing import Any

import msgspec

Text = str | list[str]


class VectoriseBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Text
    model: str = "english"


class VectorResponse(msgspec.Struct):
    vector: list[float]


class VectorListResponse(msgspec.Struct):
    vectorList: list[list[float]]


class TextClassificationBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Text
    labels: list[str | list[str]]  # msgspec takes one array type in a union: checked in the use case
    model: str = "english"


class ImageClassificationBody(msgspec.Struct, forbid_unknown_fields=True):
    image: str
    labels: list[str]
    model: str = "english"


class ProbabilitiesResponse(msgspec.Struct):
    probabilities: dict[str, float] | list[dict[str, float]]
    model: str  # edgewatch: which models answered, and that the classification is zero-shot


class QABody(msgspec.Struct, forbid_unknown_fields=True):
    question: Text
    context: Text
    prev_q: list[str | list[str]] = msgspec.field(default_factory=list)
    prev_a: list[str | list[str]] = msgspec.field(default_factory=list)
    model: str = "english"


class AnswerResponse(msgspec.Struct):
    answer: str | list[str]
    model: str  # edgewatch: which model answered, and what it is


class TextBody(msgspec.Struct, forbid_unknown_fields=True):
    """Summarisation and emotion: text or texts, and a model."""

    text: Text
    model: str = "english"


class GenerationBody(msgspec.Struct, forbid_unknown_fields=True):
    text: Text
    min_length: int | None = None
    max_length: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    length_penalty: float | None = None
    num_beams: int | None = None
    num_generations: int | None = None
    do_sample: bool | None = None
    model: str | None = None
    stream: bool = False  # edgewatch: server-sent events instead of one answer (README "Task API")


class OutputResponse(msgspec.Struct):
    output: str | list[str | list[str]]
    model: str  # edgewatch: which model answered, and what it is


GENERATIVE_NOTE = ("written by a small instruct language model (135M parameters), not an extractive QA or "
                   "summarisation model: check what it says against the text")


EMOTION_MODEL_NOTE = ("a BiLSTM trained on the dair-ai emotion tweets: six emotions (joy, fear, anger, sadness, love, "
                      "surprise), not the 28 of GoEmotions, and no neutral")


class EmotionResponse(msgspec.Struct):
    """The spec's ``output``, plus ``model``: which model answered and what its labels can be."""

    output: str | list[str]
    model: str


class ModelInfo(msgspec.Struct, omit_defaults=True):
    id: str
    name: str
    description: str
    tasks: list[str]
    build_status: str
    last_deployment: str | None = None
    build_message: str | None = None


class UploadUrlBody(msgspec.Struct, forbid_unknown_fields=True):
    model_name: str


class Message(msgspec.Struct):
    """An error, as an API gateway answers one."""

    message: str


def items(value: Any) -> tuple[list[Any], bool]:
    """(the items, whether the request was a batch)."""
    return (list(value), True) if isinstance(value, list) else ([value], False)
