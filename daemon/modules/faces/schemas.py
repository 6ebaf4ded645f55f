"""The faces module's answers: the CodeProject.AI envelope with the face API's own fields."""

from __future__ import annotations

from edgewatch.daemon.modules.envelope import Envelope, Prediction


class FacePrediction(Prediction, frozen=True, omit_defaults=True):
    """A face: ``label`` is "face" (detect) or the person (recognize); ``userid`` the person or "unknown"."""

    userid: str | None = None


class FaceResponse(Envelope, kw_only=True, omit_defaults=True):
    """The envelope of every /v1/vision/face answer; each command fills its own fields."""

    inferenceMs: int = 0
    processMs: int = 0
    predictions: list[FacePrediction] | None = None  # detect, recognize
    count: int | None = None
    similarity: float | None = None                  # match
    faces: list[str] | None = None                   # list: the registered user ids
