"""sead's YAMNet as installed: the ONNX out of its zip, one self-contained file, float in and out.

sead 0.2.1 ships Qualcomm AI Hub's w8a8 YAMNet as ``YamNet_w8a8.onnx.zip`` (a graph plus its
weights in a separate ``model.data``), taking uint8 log-mel patches and giving uint8 logits. The
store holds one file per variant, so the weights are folded into the graph; and the boundary
quantisation is moved inside it (a QuantizeLinear before the input's DequantizeLinear, a
DequantizeLinear after the output's QuantizeLinear, with the graph's own scales), so callers feed
float log-mel and read float logits while every int8 operation of the shipped graph is kept.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper


def repair_yamnet(archive: Path, out: Path) -> dict[str, int]:
    """``archive`` (the package's .onnx.zip) → ``out``; returns what was changed."""
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
        found = sorted(Path(tmp).rglob("*.onnx"))
        if len(found) != 1:
            raise ValueError(f"{archive.name}: expected one .onnx inside, found {[p.name for p in found]}")
        model = onnx.load(str(found[0]), load_external_data=True)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    (inp,), (outp,) = graph.input, graph.output
    names = {"input": inp.name, "output": outp.name}
    for what, scale, zero in (("input", f"{inp.name}_scale", f"{inp.name}_zero_point"),
                              ("output", f"{outp.name}_scale", f"{outp.name}_zero_point")):
        if scale not in inits or zero not in inits:
            raise ValueError(f"{archive.name}: the {what} {names[what]!r} has no {scale}/{zero}: not sead's w8a8 YAMNet")
    q_in, q_out = inp.name + "_quantized", outp.name + "_quantized"
    for node in graph.node:  # the graph's own uses of the uint8 input and output now take the renamed tensors
        node.input[:] = [q_in if n == inp.name else n for n in node.input]
        node.output[:] = [q_out if n == outp.name else n for n in node.output]
    graph.node.insert(0, helper.make_node("QuantizeLinear", [inp.name, f"{inp.name}_scale", f"{inp.name}_zero_point"],
                                          [q_in], name="edgewatch_quantize_input"))
    graph.node.append(helper.make_node("DequantizeLinear", [q_out, f"{outp.name}_scale", f"{outp.name}_zero_point"],
                                       [outp.name], name="edgewatch_dequantize_output"))
    inp.type.tensor_type.elem_type = TensorProto.FLOAT
    outp.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(model)
    onnx.save(model, str(out))  # under 2 GB: one file, no external data
    qdq = sum(1 for n in graph.node if n.op_type == "QuantizeLinear")
    return {"external_data_folded": 1, "float_io_wrapped": 2, "int8_quantize_nodes": qdq}
