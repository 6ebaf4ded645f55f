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
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.modules.requests import queued
from edgewatch.daemon.modules.taskapi.schemas import (ImageClassificationBody, ProbabilitiesResponse,
                                                      TextClassificationBody, VectorListResponse, VectoriseBody,
                                                      VectorResponse, items)
from edgewatch.models.runtime.zeroshot import TEXT_TEMPLATE, image_probabilities, text_probabilities

if TYPE_CHECKING:
    from edgewatch.daemon.modules.taskapi.module import TaskApiModule

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
    return ProbabilitiesResponse(answers if batch else answers[0])


def image_bytes(value: str) -> bytes:
    """The image of a base64 string, with or without a data: URL prefix."""
    text = DATA_URL.sub("", value.strip(), count=1)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("image is not base64: send the image file base64-encoded, optionally as a data URL "
                         "(data:image/png;base64,...)") from None


async def classify_image(module: TaskApiModule, queue: InferenceQueue, body: ImageClassificationBody):
    if body.model != "english":
        from edgewatch.daemon.modules.errors import NotFound

        raise NotFound(f"model {body.model} not found")
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

    return ProbabilitiesResponse(await queued(queue, job))
