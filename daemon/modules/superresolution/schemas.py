"""The super-resolution answer: the CodeProject.AI envelope with the spec's ``imageBase64`` (a PNG)."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope


class SuperResolutionResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/image/superresolution: ``imageBase64`` is the upscaled image as base64 PNG."""

    inferenceMs: int = 0
    processMs: int = 0
    imageBase64: str | None = None
    width: int | None = None    # of the upscaled image
    height: int | None = None
    scale: int | None = None    # how many times wider and taller than the upload
