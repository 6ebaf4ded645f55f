"""Conversion of registry-shipped weights into the formats the backends run.

TF.js graph models are converted to ONNX by ``tfjs_direct`` (op by op, numpy and onnx only, in
under a second); a graph with ops it does not know goes to ``tfjs_worker.py`` instead, running in
a separate venv (tensorflow-cpu + tf2onnx) that ``converter_env`` builds. The daemon never
imports TensorFlow.
"""
