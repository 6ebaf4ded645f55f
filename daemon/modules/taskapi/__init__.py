"""The task API (the Backprop API of shared/spec/backprop-api.md) served on the box under /backprop:
text vectorisation, zero-shot text and image classification, QA, generation, summarisation,
emotion and model management, behind x-api-key keys."""

from edgewatch.daemon.modules.taskapi.module import MODULE_ID, TaskApiModule

__all__ = ["MODULE_ID", "TaskApiModule"]
