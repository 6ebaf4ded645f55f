"""ONNX -> int8 .rknn for Rockchip NPUs (RK3588 / RK3576 / RK3568 / RK3566), in a separate venv.

rknn-toolkit2 pins an old stack (numpy <= 1.26, protobuf 4, torch <= 2.4, opencv-python) and is
several GB, so it never enters the daemon's environment: ``rknn_worker.py`` runs with the python
of a dedicated venv at ``cache_dir / "venvs" / "rknn-toolkit2-<hash>"`` (the hash covers the
pinned list and the Python version). Building it works like ``converter_env``: exact pins,
``--only-binary :all:``, an import check, a marker file written last, a lock for concurrent
builders, and errors that say what to do next.

How the converted model is fed (``input_mode="uint8"``, the default and the verified one): the
mean/std of the model's preprocessing are compiled into the model
(``rknn.config(mean_values=..., std_values=...)``), so the NPU normalises and the host only
letterboxes. A runtime backend (``rknnlite``'s ``RKNNLite`` on the board) must feed the
letterboxed image as **uint8 NHWC ``[1, H, W, 3]`` in the model's colour order** (BGR for
NanoDet), with ``inference(inputs=[x], data_format="nhwc")``; :func:`runtime_input_spec` gives the
``InputSpec`` to letterbox with. Outputs come back as float32 arrays in the ONNX graph's output
order with the ONNX shapes (NanoDet: ``[1,169,80], [1,169,44], [1,676,80], [1,2704,80],
[1,676,44], [1,2704,44]``), which ``postprocess.decode("nanodet_gfl", ...)`` finds by shape.
``input_mode="float"`` keeps normalisation on the host and feeds the same float32 NCHW tensor as
the ONNX model with ``data_format="nchw"``.

The toolkit's PC simulator can only run a model built in the same process, so :func:`simulate`
rebuilds from the ONNX with the same calibration samples (the build is deterministic: the same
samples give the same outputs) and runs the test inputs on it.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgewatch.models.conversion.tool_env import (
    ConversionError,
    ConverterEnvError,
    Progress,
    ToolEnv,
    run_streaming,
    tail_text,
)
from edgewatch.models.manifest import InputSpec, Preprocessing

# Exact pins, verified together on CPython 3.11 / Linux x86_64 (converting NanoDet-m for rk3588,
# rk3576, rk3568 and rk3566 and running it on the toolkit's simulator). rknn-toolkit2 2.5.0's own
# bounds: numpy<=1.26.4, protobuf>=4.21.6,<=4.25.4, onnx>=1.16.1,<=1.18.0, onnxruntime>=1.17.0,
# torch>=1.10.1,<=2.4.0 (imported by `rknn.api`, so it is needed even for ONNX models),
# opencv-python, scipy, psutil, ruamel.yaml, tqdm, fast-histogram.
#   onnxruntime 1.26.0 / opencv-python 4.11.0.86: the newest that still accept numpy 1.26.
#   torch 2.4.0 pulls the CUDA 12.1 wheels and triton on Linux x86_64 (about 3 GB, unused here but
#   loaded by `import torch`); they carry torch's own environment marker.
# rknn-toolkit2 2.5.0 ships wheels for CPython 3.6-3.12 on Linux x86_64 and aarch64 only.
_CUDA = "; platform_system == 'Linux' and platform_machine == 'x86_64'"
PINNED_REQUIREMENTS: tuple[str, ...] = (
    "rknn-toolkit2==2.5.0",
    "numpy==1.26.4",
    "onnx==1.18.0",
    "onnxruntime==1.26.0",
    "protobuf==4.25.4",
    "torch==2.4.0",
    "opencv-python==4.11.0.86",
    "fast-histogram==0.14",
    "filelock==4.2.12",
    "flatbuffers==25.12.19",
    "fsspec==2026.9.0",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
    "mpmath==1.3.0",
    "networkx==3.6.1",
    "packaging==26.3",
    "psutil==7.2.2",
    "ruamel.yaml==0.19.1",
    "scipy==1.17.1",
    "sympy==1.14.0",
    "tqdm==4.70.1",
    "typing_extensions==4.16.0",
    "nvidia-cublas-cu12==12.1.3.1" + _CUDA,
    "nvidia-cuda-cupti-cu12==12.1.105" + _CUDA,
    "nvidia-cuda-nvrtc-cu12==12.1.105" + _CUDA,
    "nvidia-cuda-runtime-cu12==12.1.105" + _CUDA,
    "nvidia-cudnn-cu12==9.1.0.70" + _CUDA,
    "nvidia-cufft-cu12==11.0.2.54" + _CUDA,
    "nvidia-curand-cu12==10.3.2.106" + _CUDA,
    "nvidia-cusolver-cu12==11.4.5.107" + _CUDA,
    "nvidia-cusparse-cu12==12.1.0.106" + _CUDA,
    "nvidia-nccl-cu12==2.20.5" + _CUDA,
    "nvidia-nvjitlink-cu12==12.9.86" + _CUDA,
    "nvidia-nvtx-cu12==12.1.105" + _CUDA,
    "triton==3.0.0" + _CUDA,
)
TOOLKIT_VERSION = "2.5.0"
PLATFORMS: tuple[str, ...] = ("rk3588", "rk3576", "rk3568", "rk3566")
DEFAULT_PLATFORM = "rk3588"
INPUT_MODES = ("uint8", "float")

WORKER_SCRIPT = Path(__file__).with_name("rknn_worker.py")
MIN_FREE_BYTES = 10 * 1024**3  # the venv takes about 5.6 GiB; pip needs room for the wheels too
CONVERT_TIMEOUT_S = 30 * 60
_SUPPORTED_PYTHONS = ((3, 6), (3, 12))  # rknn-toolkit2 2.5.0 wheels
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _check_host() -> None:
    machine = _platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64", "aarch64", "arm64"):
        raise ConverterEnvError(
            f"rknn-toolkit2 {TOOLKIT_VERSION} ships only for Linux x86_64 and aarch64 (this is {sys.platform} "
            f"{machine}): convert the model on such a machine and copy the .rknn file over")
    lo, hi = _SUPPORTED_PYTHONS
    if not lo <= sys.version_info[:2] <= hi:
        raise ConverterEnvError(
            f"rknn-toolkit2 {TOOLKIT_VERSION} has wheels for CPython {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} only, and the "
            f"converter venv uses this Python ({sys.version.split()[0]}): run edgewatch with Python 3.11 or 3.12 "
            "to convert, or convert on another machine and copy the .rknn file over")


def _clean(line: str) -> str:
    return _ANSI.sub("", line)


RKNN_ENV = ToolEnv(
    prefix="rknn-toolkit2",
    title="RKNN converter",
    requirements=PINNED_REQUIREMENTS,
    import_check=("import numpy, onnx, onnxruntime, cv2, torch; from rknn.api import RKNN; "
              "from importlib.metadata import version; "
              "print('rknn-toolkit2', version('rknn-toolkit2'), 'numpy', numpy.__version__, "
              "'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'torch', torch.__version__)"),
    size="about 5.6 GiB",
    download="about 3 GB",
    min_free_bytes=MIN_FREE_BYTES,
    fallback="convert on another machine and copy the .rknn file over",
    host_check=_check_host,
)


def env_name() -> str:
    return RKNN_ENV.name()


def env_dir(cache_dir: Path) -> Path:
    return RKNN_ENV.dir(cache_dir)


def env_ready(cache_dir: Path) -> bool:
    """True if the rknn-toolkit2 venv is already built under ``cache_dir`` (nothing is installed)."""
    return RKNN_ENV.ready(cache_dir)


def env_python(cache_dir: Path) -> Path | None:
    """The rknn venv's python if that venv is already built, else None (nothing is installed)."""
    return RKNN_ENV.python(cache_dir)


def ensure_rknn_env(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Create (once) the rknn-toolkit2 venv and return the path of its python."""
    return RKNN_ENV.ensure(cache_dir, progress)


def runtime_input_spec(spec: InputSpec, input_mode: str = "uint8") -> InputSpec:
    """The InputSpec to letterbox with for the converted model (what the RKNN runtime is fed).

    ``uint8``: ``[1, H, W, 3]`` uint8 NHWC, not normalised (the NPU does it), in the
    preprocessing's colour order. ``float``: the ONNX model's own float32 NCHW spec.
    """
    if input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_MODES}, not {input_mode!r}")
    w, h = spec.size
    if input_mode == "float":
        return InputSpec(name=spec.name, shape=(1, 3, h, w), layout="nchw", dtype="float32")
    return InputSpec(name=spec.name, shape=(1, h, w, 3), layout="nhwc", dtype="uint8")


def runtime_call(input_mode: str = "uint8") -> str:
    """The inference call a runtime backend makes (rknn-toolkit2 RKNN or rknn-toolkit-lite2 RKNNLite)."""
    return f"inference(inputs=[x], data_format={'nhwc' if input_mode == 'uint8' else 'nchw'!r})"


def _default_entry(spec: InputSpec | None, pre: Preprocessing | None) -> tuple[InputSpec, Preprocessing]:
    if spec is not None and pre is not None:
        return spec, pre
    from edgewatch.models.catalogue import catalogue

    entry = catalogue()["nanodet"]
    return spec or entry.input, pre or entry.preprocessing


def _calibration_npz(path: Path, images: Sequence[Path], spec: InputSpec, pre: Preprocessing,
                     input_mode: str) -> int:
    from edgewatch.models.quantize import calibration_tensors

    if not images:
        raise ConversionError("no calibration images: int8 conversion needs a few real photos")
    try:
        tensors = calibration_tensors([Path(p) for p in images], runtime_input_spec(spec, input_mode), pre)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc
    np.savez(path, *tensors)
    return len(tensors)


@dataclass(frozen=True)
class Build:
    """How a model is built beyond the defaults (NanoDet's): ``samples`` are ready calibration
    tensors in the runtime's input format (instead of letterboxed calibration images),
    ``input_shape`` fixes a dynamic input (N, C, H, W), ``fp16`` skips int8 quantisation."""

    samples: Sequence[np.ndarray] | None = None
    input_shape: tuple[int, int, int, int] | None = None
    fp16: bool = False


def _run_worker(fp32_onnx: Path, out_rknn: Path | None, calibration_images: Sequence[Path], platform: str,
                cache_dir: Path, progress: Progress | None, spec: InputSpec | None, pre: Preprocessing | None,
                input_mode: str, test_inputs: Sequence[np.ndarray] | None, timeout_s: float, build: Build = Build()
                ) -> tuple[dict, list[list[np.ndarray]] | None]:
    say = progress or (lambda _msg: None)
    fp32_onnx = Path(fp32_onnx)
    if not fp32_onnx.is_file():
        raise ConversionError(f"ONNX model not found: {fp32_onnx}; convert or install the model first")
    if platform not in PLATFORMS:
        raise ConversionError(f"unknown RKNN platform {platform!r}: choose one of {', '.join(PLATFORMS)}")
    if input_mode not in INPUT_MODES:
        raise ConversionError(f"unknown input mode {input_mode!r}: choose one of {', '.join(INPUT_MODES)}")
    spec, pre = _default_entry(spec, pre)
    python = ensure_rknn_env(Path(cache_dir), progress)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgewatch-rknn-") as work_s:
        work = Path(work_s)
        if build.samples is not None:
            np.savez(work / "calibration.npz", *[np.asarray(x) for x in build.samples])
            n_calib = len(build.samples)
        else:
            n_calib = _calibration_npz(work / "calibration.npz", calibration_images, spec, pre, input_mode)
        meta_path = work / "meta.json"
        cmd = [str(python), "-I", str(WORKER_SCRIPT), str(fp32_onnx),
               str(Path(out_rknn).resolve()) if out_rknn is not None else "-",
               "--platform", platform, "--dataset", str(work / "calibration.npz"), "--input-mode", input_mode,
               "--mean", *map(str, pre.mean), "--std", *map(str, pre.std), "--color", pre.color,
               "--pad-value", str(pre.pad_value), "--meta-out", str(meta_path)]
        if build.input_shape is not None:
            cmd += ["--input-shape", *map(str, build.input_shape)]
        if build.fp16:
            cmd.append("--fp16")
        if test_inputs is not None:
            np.savez(work / "test_inputs.npz", *[np.asarray(x) for x in test_inputs])
            cmd += ["--test-inputs", str(work / "test_inputs.npz"), "--test-outputs", str(work / "test_outputs.npz")]
        if out_rknn is not None:
            Path(out_rknn).parent.mkdir(parents=True, exist_ok=True)

        def on_worker_line(line: str) -> None:
            if line.startswith("[rknn-worker"):
                say(line)

        target = f" -> {Path(out_rknn).name}" if out_rknn is not None else ""
        how = "float16" if build.fp16 else f"int8 ({n_calib} calibration samples)"
        say(f"converting {fp32_onnx.name} to {how} RKNN for {platform}{target}")
        try:
            rc, lines = run_streaming(cmd, timeout_s=timeout_s, on_line=on_worker_line, cwd=work)
        finally:
            if out_rknn is not None:  # the worker's temporary file, if it was killed mid-write
                out = Path(out_rknn)
                for stray in out.parent.glob(f".{out.name}.*.tmp"):
                    stray.unlink(missing_ok=True)
        lines = [_clean(x) for x in lines]
        if rc != 0:
            why = f"ran past {timeout_s:.0f} s and was stopped" if rc == -1 else f"exit {rc}"
            raise ConversionError(
                f"converting {fp32_onnx} to RKNN ({platform}) failed ({why}). If the ONNX file is damaged, convert "
                f"the model again; the model may also use an operator rknn-toolkit2 {TOOLKIT_VERSION} cannot "
                f"convert.\nconverter output:\n{tail_text(lines)}")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ConversionError(f"the RKNN converter reported success but wrote no metadata ({exc}).\n"
                                  f"converter output:\n{tail_text(lines)}") from exc
        outputs = None
        if test_inputs is not None:
            with np.load(work / "test_outputs.npz") as data:
                n_out = len(meta["outputs"])
                outputs = [[data[f"t{i}_o{j}"] for j in range(n_out)] for i in range(len(test_inputs))]
    if out_rknn is not None:
        out = Path(out_rknn)
        if not out.is_file() or out.stat().st_size == 0:
            raise ConversionError(
                f"the RKNN converter reported success but wrote no {out}.\nconverter output:\n{tail_text(lines)}")
        h = hashlib.sha256()
        with open(out, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        meta.update(file=out.name, size_bytes=out.stat().st_size, sha256=h.hexdigest())
    meta["runtime_call"] = runtime_call(input_mode)
    meta["calibration_images"] = len(calibration_images)
    meta["seconds"] = round(time.monotonic() - t0, 1)
    say(f"RKNN conversion for {platform} done in {meta['seconds']:.1f} s")
    return meta, outputs


def convert_onnx_to_rknn(fp32_onnx: Path, out_rknn: Path, calibration_images: list[Path],
                         platform: str = DEFAULT_PLATFORM, cache_dir: Path | None = None,
                         progress: Progress | None = None, *, spec: InputSpec | None = None,
                         pre: Preprocessing | None = None, input_mode: str = "uint8",
                         timeout_s: float = CONVERT_TIMEOUT_S) -> dict:
    """Convert ``fp32_onnx`` to an int8 .rknn at ``out_rknn`` for ``platform``.

    Quantisation is calibrated on ``calibration_images`` (each letterboxed, plus its mirror).
    ``spec``/``pre`` are the model's input spec and preprocessing (default: the catalogue's
    ``nanodet`` entry). The rknn-toolkit2 venv is built first if needed. ``out_rknn`` is replaced
    atomically; on failure it is left as it was and ConversionError is raised with the tail of
    the worker's output. Returns metadata: toolkit version, platform, input (layout, dtype,
    shape, where normalisation happens, the ``data_format`` to pass), outputs (names, shapes in
    order), graph fixes, file size/sha256, seconds.
    """
    if cache_dir is None:
        raise ConversionError("cache_dir is needed (the RKNN converter venv lives under it)")
    meta, _ = _run_worker(Path(fp32_onnx), Path(out_rknn), calibration_images, platform, Path(cache_dir),
                          progress, spec, pre, input_mode, None, timeout_s)
    return meta


def simulate(fp32_onnx: Path, inputs: Sequence[np.ndarray], calibration_images: list[Path],
             platform: str = DEFAULT_PLATFORM, cache_dir: Path | None = None, progress: Progress | None = None,
             *, spec: InputSpec | None = None, pre: Preprocessing | None = None, input_mode: str = "uint8",
             out_rknn: Path | None = None, timeout_s: float = CONVERT_TIMEOUT_S, build: Build = Build()
             ) -> tuple[list[list[np.ndarray]], dict]:
    """Build the RKNN model (int8 as :func:`convert_onnx_to_rknn`, or as ``build`` says) and run
    ``inputs`` on the PC simulator.

    ``inputs`` are runtime inputs, letterboxed with :func:`runtime_input_spec` (uint8 NHWC in the
    default mode). Returns (per input, the outputs in ONNX output order as float32 arrays;
    metadata). When ``out_rknn`` is given the model is also written there, so the simulated model
    is exactly the file kept.
    """
    if cache_dir is None:
        raise ConversionError("cache_dir is needed (the RKNN converter venv lives under it)")
    meta, outputs = _run_worker(Path(fp32_onnx), Path(out_rknn) if out_rknn is not None else None,
                                calibration_images, platform, Path(cache_dir), progress, spec, pre, input_mode,
                                list(inputs), timeout_s, build)
    assert outputs is not None
    return outputs, meta
