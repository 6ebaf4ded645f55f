"""The background module's answer: the CodeProject.AI envelope with the Background Remover's field."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope


class BackgroundResponse(Envelope, kw_only=True, omit_defaults=True):
    """/v1/image/removebackground: ``imageBase64`` is a PNG (RGBA) of the image's size, base64, whose
    alpha is 0 on the background."""

    inferenceMs: int = 0
    processMs: int = 0
    imageBase64: str | None = None
