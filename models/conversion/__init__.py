"""Conversion of registry-shipped weights into the formats the backends run.

TF.js graph models are converted to ONNX by ``tfjs_worker.py`` running in a separate venv
(tensorflow-cpu + tf2onnx) that ``converter_env`` builds; the daemon never imports TensorFlow.
"""
