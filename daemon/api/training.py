"""/v1/train/*: CodeProject.AI's YOLOv5 training routes, answered honestly: training needs PyTorch
and a GPU, which a box like this does not have, so every one of them is 501 saying so."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import FromPath

from edgewatch.daemon.api.errors import ApiError

COMMANDS = ("create_dataset", "train_model", "status", "cancel", "resume_training", "model_info", "dataset_info")
NOT_HERE = ("training custom models is not available on edgewatch: YOLOv5 training needs PyTorch and a GPU. "
            "Train on a PC (e.g. CodeProject.AI's Training module or Ultralytics), export to ONNX and add it "
            "with `edgewatch models add FILE`")


class TrainingController(Controller):
    path = "/v1/train"
    tags = ["training"]
    opt = {"scope": "admin"}

    @post("/{command:str}", status_code=501, summary="Not available: answers 501 with what to do instead",
          description=f"CodeProject.AI's training commands ({', '.join(COMMANDS)}). {NOT_HERE}.")
    async def train(self, command: FromPath[str]) -> None:
        raise ApiError(501, NOT_HERE)
