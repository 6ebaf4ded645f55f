"""The task API's tasks, the same for every transport: bodies in, the spec's answers out; what the
caller can fix raises the module errors (400 with what to send, 404 for an unknown model). Model
work runs on the shared inference queue."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING

import numpy as np

from edgewatch.daemon.imaging import ImageError, decode_image
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.errors import BadRequest, NotFound, RequestError
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.taskapi.schemas import (EMOTION_MODEL_NOTE, GENERATIVE_NOTE, AnswerResponse,
                                                      EmotionResponse, GenerationBody, ImageClassificationBody,
                                                      OutputResponse, ProbabilitiesResponse, QABody, TextBody,
                                                      TextClassificationBody, VectorListResponse, VectoriseBody,
                                                      VectorResponse, items)
from edgewatch.models.runtime.summary import summarize as rank
from edgewatch.models.runtime.text import split_sentences
from edgewatch.models.runtime.zeroshot import TEXT_TEMPLATE, image_probabilities, text_probabilities

if TYPE_CHECKING:
    from edgewatch.daemon.modules.taskapi.module import TaskApiModule

class NotImplemented_(RequestError):
    """A task this box does not do (501), and why."""

    status = 501


DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,", re.ASCII)


def _texts(module: TaskApiModule, value, what: str = "text") -> tuple[list[str], bool]:
    texts, batch = items(value)
    settings = module.settings
    if not texts:
        raise BadRequest(f"{what} is an empty list: send a string or a list of strings")
    if len(texts) > settings.max_batch:
        raise BadRequest(f"{len(texts)} items in one request: send at most {settings.max_batch} (task_api.max_batch)")
    for text in texts:
        if not text.strip():
            raise BadRequest(f"{what} must not be empty")
        if len(text) > settings.max_text_chars:
            raise BadRequest(f"a {what} of {len(text)} characters: send at most {settings.max_text_chars} "
                             "(task_api.max_text_chars)")
    return texts, batch


def _english_only(model: str) -> None:
    """Tasks with one model: the spec's ``english``; any other name is NotFound, as the spec answers."""
    if model != "english":
        raise NotFound(f"model {model} not found")


def _labels(module: TaskApiModule, labels: list[str]) -> list[str]:
    if len(labels) < 2:
        raise BadRequest("labels: send at least two labels to choose between")
    if len(labels) > module.settings.max_labels:
        raise BadRequest(f"{len(labels)} labels: send at most {module.settings.max_labels} (task_api.max_labels)")
    if len(set(labels)) != len(labels) or any(not label.strip() for label in labels):
        raise BadRequest("labels must be distinct, non-empty strings")
    return labels


async def vectorise(module: TaskApiModule, queue: InferenceQueue, body: VectoriseBody):
    texts, batch = _texts(module, body.text)
    vectors = await queued(queue, lambda: module.embed(body.model, texts))
    rows = [[round(float(v), 7) for v in row] for row in vectors]
    return VectorListResponse(rows) if batch else VectorResponse(rows[0])


async def classify_text(module: TaskApiModule, queue: InferenceQueue, body: TextClassificationBody):
    texts, batch = _texts(module, body.text)
    if batch:
        if len(body.labels) != len(texts) or not all(isinstance(group, list) for group in body.labels):
            raise BadRequest("a batch needs one list of labels per text: labels is a list of lists as long as text")
        groups = [_labels(module, group) for group in body.labels]  # type: ignore[arg-type]
    else:
        if not all(isinstance(label, str) for label in body.labels):
            raise BadRequest("labels: send a list of strings for one text (a list of lists goes with a list of texts)")
        groups = [_labels(module, body.labels)]  # type: ignore[arg-type]

    def job() -> list[dict[str, float]]:
        unique = sorted({label for group in groups for label in group})
        vectors = module.embed(body.model, texts + [TEXT_TEMPLATE.format(label) for label in unique])
        text_vectors, by_label = vectors[:len(texts)], dict(zip(unique, vectors[len(texts):]))
        out = []
        for vector, group in zip(text_vectors, groups):
            probs = text_probabilities(vector[None], np.stack([by_label[label] for label in group]))[0]
            out.append({label: round(float(p), 4) for label, p in zip(group, probs)})
        return out

    answers = await queued(queue, job)
    name = module.settings.english if body.model == "english" else module.settings.multilingual
    return ProbabilitiesResponse(answers if batch else answers[0],
                                 model=f"{name}: zero-shot, by the similarity of the text to each label")


def image_bytes(value: str) -> bytes:
    """The image of a base64 string, with or without a data: URL prefix."""
    text = DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image is not base64: send the image file base64-encoded, optionally as a data URL "
                         "(data:image/png;base64,...)") from None


async def classify_image(module: TaskApiModule, queue: InferenceQueue, body: ImageClassificationBody):
    _english_only(body.model)
    labels = _labels(module, body.labels)
    data = image_bytes(body.image)

    def job() -> dict[str, float]:
        try:
            image, _ = decode_image(data, module.config.server.max_image_pixels, exif_orientation=True)
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        result, manifest = module.classify_image(image)
        class_vectors = module.class_vectors(manifest)
        label_vectors = module.embed("english", [TEXT_TEMPLATE.format(label) for label in labels])
        probs = image_probabilities(result.probs, class_vectors, label_vectors)
        return {label: round(float(p), 4) for label, p in zip(labels, probs)}

    settings = module.settings
    return ProbabilitiesResponse(await queued(queue, job), model=(
        f"{settings.image} + {settings.english}: zero-shot, ImageNet's 1,000 classes carried onto your labels"))


# /emotion answers a string per text: the emotions that score at least this share of the top one
# (the spec's example answers "disappointment, sadness"), highest first.
EMOTION_SHARE = 0.5


async def emotion(module: TaskApiModule, queue: InferenceQueue, body: TextBody):
    _english_only(body.model)
    texts, batch = _texts(module, body.text)

    def job() -> tuple[list[str], str]:
        classifier = module.emotion.get()
        answers = []
        for probs in classifier.classify(texts):
            ranked = sorted(probs.items(), key=lambda kv: -kv[1])
            answers.append(", ".join(label for label, p in ranked if p >= EMOTION_SHARE * ranked[0][1]))
        return answers, classifier.manifest.name

    answers, name = await queued(queue, job)
    return EmotionResponse(answers if batch else answers[0], model=f"{name}: {EMOTION_MODEL_NOTE}")


# -- the language model: /text-generation, /summarisation, /qa -----------------------------------------

QA_OFF = ("question answering is off on this box: no extractive QA model ships in any registry package, and the "
          "small language model it has answered only 3 of 10 test questions right (it makes answers up rather than say "
          "unknown). To let it answer anyway, set task_api.qa: generative in the config (README: Task API)")
GENERATION_MODELS = (None, "gpt2-large", "t5-base-qa-summary-emotion", "english")  # the spec's names: ours answers
MAX_GENERATIONS = 8


def generation_model(module: TaskApiModule, model: str | None) -> str | None:
    """The language model a request's ``model`` names: None for the configured one (the spec's own
    names stand for it), or an uploaded GGUF model's name; NotFound otherwise."""
    if model in GENERATION_MODELS:
        return None
    if module.uploaded_generator(model):  # type: ignore[arg-type]
        return model
    raise NotFound(f"model {model} not found")


def _number(name: str, value, default, low, high, *, integer: bool = False, low_open: bool = False):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        raise BadRequest(f"{name} must be {'an integer' if integer else 'a number'}")
    if not (low < value if low_open else low <= value) or value > high or value != value:
        raise BadRequest(f"{name} must be {'more than' if low_open else 'at least'} {low} and at most {high}, got {value}")
    return int(value) if integer else float(value)


def sampling(module: TaskApiModule, body: GenerationBody) -> dict:
    """The body's generation parameters checked against the spec's meaning of each, as Generator keywords."""
    cap = module.settings.max_new_tokens
    max_tokens = _number("max_length", body.max_length, min(64, cap), 1, cap, integer=True)
    min_tokens = _number("min_length", body.min_length, 0, 0, max_tokens, integer=True)
    temperature = _number("temperature", body.temperature, 1.0, 0.0, 10.0)
    if body.do_sample is False:
        temperature = 0.0  # greedy, as Hugging Face's do_sample=False
    if body.num_beams not in (None, 1):
        raise BadRequest("num_beams: beam search is not available on this box (llama.cpp samples one sequence); "
                         "send 1 or leave it out")
    if body.length_penalty not in (None, 1, 1.0):
        raise BadRequest("length_penalty applies to beam search, which this box does not do: send 1 or leave it out")
    return {"max_tokens": max_tokens, "min_tokens": min_tokens, "temperature": temperature,
            "top_k": _number("top_k", body.top_k, 0, 0, 1000, integer=True),
            "top_p": _number("top_p", body.top_p, 1.0, 0.0, 1.0, low_open=True),
            "repetition_penalty": _number("repetition_penalty", body.repetition_penalty, 1.0, 0.0, 10.0, low_open=True)}


def generation_count(body: GenerationBody) -> int:
    return _number("num_generations", body.num_generations, 1, 1, MAX_GENERATIONS, integer=True)


async def generate(module: TaskApiModule, queue: InferenceQueue, body: GenerationBody) -> OutputResponse:
    name = generation_model(module, body.model)
    texts, batch = _texts(module, body.text)
    params, count = sampling(module, body), generation_count(body)

    def job() -> list[list[str]]:
        generator = module.generator(name)
        # each of num_generations its own seed: the same request gives the same texts, and they differ
        return [[text + generator.generate(text, seed=seed, **params).text for seed in range(count)] for text in texts]

    outputs = await queued(queue, job)
    shaped = [out[0] if count == 1 else out for out in outputs]
    return OutputResponse(shaped if batch else shaped[0], model=name or module.settings.generation)


async def summarise(module: TaskApiModule, queue: InferenceQueue, body: TextBody) -> OutputResponse:
    name = generation_model(module, body.model)
    texts, batch = _texts(module, body.text)
    settings = module.settings
    if settings.summaries == "generative" or name is not None:  # an uploaded model is asked for by name
        outputs = await queued(queue, lambda: [module.generator(name).summarise(text) for text in texts])
        note = GENERATIVE_NOTE if name is None else "your uploaded language model"
        return OutputResponse(outputs if batch else outputs[0], model=f"{name or settings.generation}: {note}")

    def extract() -> list[str]:
        embedder = module.embedder("english")
        out = []
        for text in texts:
            sentences = split_sentences(text)
            chosen, _ = rank(embedder, sentences, settings.summary_sentences)
            out.append(" ".join(sentences[i] for i in chosen))
        return out

    outputs = await queued(queue, extract)
    return OutputResponse(outputs if batch else outputs[0],
                          model=f"{settings.english}: extractive, the {settings.summary_sentences} sentences most "
                                "central to the text, as written")


async def answer(module: TaskApiModule, queue: InferenceQueue, body: QABody) -> AnswerResponse:
    name = generation_model(module, body.model)
    if module.settings.qa == "off" and name is None:  # an uploaded model is asked for by name
        raise NotImplemented_(QA_OFF)
    questions, batch = _texts(module, body.question, "question")
    contexts, _ = _texts(module, body.context, "context")
    if len(contexts) != len(questions):
        raise BadRequest("a batch needs one context per question: context is a list as long as question")
    if batch:
        prev_q, prev_a = list(body.prev_q) or [[] for _ in questions], list(body.prev_a) or [[] for _ in questions]
        if len(prev_q) != len(questions) or len(prev_a) != len(questions) or not all(
                isinstance(x, list) for x in (*prev_q, *prev_a)):
            raise BadRequest("in a batch, prev_q and prev_a are lists of lists, one per question")
    else:
        if not all(isinstance(x, str) for x in (*body.prev_q, *body.prev_a)):
            raise BadRequest("prev_q and prev_a are lists of strings for one question")
        prev_q, prev_a = [list(body.prev_q)], [list(body.prev_a)]
    if any(len(q) != len(a) for q, a in zip(prev_q, prev_a)):
        raise BadRequest("prev_q and prev_a must pair up: one earlier answer per earlier question")

    def job() -> list[str]:
        generator = module.generator(name)
        return [generator.answer(q, c, pq, pa) for q, c, pq, pa in zip(questions, contexts, prev_q, prev_a)]

    answers = await queued(queue, job)
    note = GENERATIVE_NOTE if name is None else "your uploaded language model"
    return AnswerResponse(answers if batch else answers[0], model=f"{name or module.settings.generation}: {note}")
