"""Pinned tool virtual environments for the converters, and running commands in them.

Each toolchain (TensorFlow + tf2onnx, onnx2tf, rknn-toolkit2) is too large or too old-pinned
to share the daemon's environment, so it gets its own venv under
``cache_dir / "venvs" / "<prefix>-<hash>"``: the hash covers the pinned lists and the Python
version, so changing either builds a fresh one beside the old. Building is idempotent and safe
if interrupted: a marker file is written last, after an import check, and a folder without it is
removed and rebuilt. A lock file serialises concurrent builders.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

try:  # POSIX only; on other systems concurrent builds are simply not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

Progress = Callable[[str], None]

MARKER_NAME = "edgewatch-env-ready.json"
PIP_TIMEOUT_S = 90 * 60
IMPORT_CHECK_TIMEOUT_S = 5 * 60
_TAIL_LINES = 40


class ConversionError(RuntimeError):
    """Conversion could not be done; the message says why and what to do next."""


class ModelNotConvertible(ConversionError):
    """The converter ran and failed on this model: the same files and recipe would fail again."""


class ConverterEnvError(ConversionError):
    """A converter environment could not be created."""


def venv_python(venv: Path) -> Path:
    if os.name == "nt":  # pragma: no cover
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def child_env() -> dict[str, str]:
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


def run_streaming(cmd: Sequence[str], timeout_s: float, on_line: Callable[[str], None] | None = None,
                  cwd: Path | None = None) -> tuple[int, list[str]]:
    """Run cmd with stdout+stderr merged; feed each line to on_line; return (rc, last lines).

    rc is -1 when the command ran past timeout_s (it is then killed).
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", bufsize=1, env=child_env(), cwd=str(cwd) if cwd else None,
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


def tail_text(lines: Iterable[str], n: int = 15) -> str:
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("WARNING: Location ")]
    return "\n".join(lines[-n:])


def failed_requirement(lines: Sequence[str]) -> str | None:
    """The requirement pip names in 'No matching distribution found for X' and similar."""
    for ln in reversed(lines):
        for needle in ("No matching distribution found for ", "Could not find a version that satisfies the requirement "):
            if needle in ln:
                return ln.split(needle, 1)[1].split()[0].strip()
    return None


class FileLock:
    """An exclusive advisory lock on a file, held for the ``with`` block."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+")
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> bool:
        if self._fh is not None:
            if fcntl is not None:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
        return False


@dataclass(frozen=True)
class ToolEnv:
    """One toolchain's pinned venv: what goes in it, how to check it, what to say when it fails."""

    prefix: str                    # folder name prefix, e.g. "tfjs-converter"
    title: str                     # for messages, e.g. "TFLite converter"
    requirements: tuple[str, ...]  # exact pins, installed with their (pinned) dependencies
    import_check: str              # python -c code that must exit 0; its last line is recorded
    size: str                      # "about 1.5 GiB", for the progress message
    download: str                  # "about 600 MB"
    min_free_bytes: int
    fallback: str                  # the alternative offered in errors, e.g. "install a model pack instead"
    no_deps: tuple[str, ...] = ()  # pins installed afterwards with --no-deps (their own pins conflict)
    host_check: Callable[[], None] | None = None  # raises ConverterEnvError on an unsupported host

    def name(self) -> str:
        key = "\n".join(self.requirements)
        if self.no_deps:
            key += "\n--no-deps\n" + "\n".join(self.no_deps)
        key += f"\npython{sys.version_info[0]}.{sys.version_info[1]}"
        return f"{self.prefix}-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    def dir(self, cache_dir: Path) -> Path:
        return Path(cache_dir) / "venvs" / self.name()

    def ready(self, cache_dir: Path) -> bool:
        venv = self.dir(cache_dir)
        try:
            data = json.loads((venv / MARKER_NAME).read_text())
        except (OSError, ValueError):
            return False
        if not venv_python(venv).exists() or data.get("requirements") != list(self.requirements):
            return False
        return not self.no_deps or data.get("no_deps_requirements") == list(self.no_deps)

    def python(self, cache_dir: Path) -> Path | None:
        """The venv's python if it is built, else None (nothing is installed)."""
        return venv_python(self.dir(cache_dir)) if self.ready(cache_dir) else None

    def _fail(self, venv: Path, message: str) -> ConverterEnvError:
        shutil.rmtree(venv, ignore_errors=True)
        return ConverterEnvError(message)

    def _pip(self, python: Path, venv: Path, requirements: Sequence[str], say: Progress, no_deps: bool) -> None:
        def on_pip_line(line: str) -> None:
            if line.startswith(("Collecting ", "Installing collected packages", "Successfully installed")):
                say("pip: " + (line if len(line) <= 160 else line[:157] + "..."))

        cmd = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off",
               "--only-binary", ":all:", *(["--no-deps"] if no_deps else []), *requirements]
        rc, lines = run_streaming(cmd, timeout_s=PIP_TIMEOUT_S, on_line=on_pip_line)
        if rc != 0:
            failed = failed_requirement(lines)
            what = f"pip could not install {failed}" if failed else \
                f"pip could not install the {self.title} packages ({', '.join(requirements[:3])}, ...)"
            why = "it ran past the time limit" if rc == -1 else f"exit {rc}"
            raise self._fail(venv, f"{what} ({why}): check that PyPI is reachable (pip's index settings) and that "
                                   f"{venv.parent} has free space, then try again; or {self.fallback}.\n"
                                   f"pip said:\n{tail_text(lines)}")

    def ensure(self, cache_dir: Path, progress: Progress | None = None) -> Path:
        """Create the venv once and return its python; raises ConverterEnvError saying what to do."""
        say = progress or (lambda _msg: None)
        venv = self.dir(cache_dir)
        python = venv_python(venv)
        if self.ready(cache_dir):
            return python
        if self.host_check is not None:
            self.host_check()
        with FileLock(venv.parent / (venv.name + ".lock")):
            if self.ready(cache_dir):  # another process built it while we waited
                return python
            t0 = time.monotonic()
            if venv.exists():
                say(f"removing incomplete {self.title} environment {venv}")
                shutil.rmtree(venv, ignore_errors=True)
                if venv.exists():
                    raise ConverterEnvError(f"could not remove the incomplete {self.title} environment {venv}: "
                                            "delete that folder by hand and try again")
            venv.parent.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(venv.parent).free
            if free < self.min_free_bytes:
                raise ConverterEnvError(
                    f"not enough free disk space to build the {self.title} in {venv.parent} ({free / 1024**3:.1f} GiB "
                    f"free, about {self.min_free_bytes / 1024**3:.0f} GiB needed): free some space and try again, "
                    f"or {self.fallback}")
            say(f"creating the {self.title} environment in {venv} (one time; {self.size})")
            rc, lines = run_streaming([sys.executable, "-m", "venv", str(venv)], timeout_s=10 * 60)
            if rc != 0 or not python.exists():
                raise self._fail(venv, f"'{sys.executable} -m venv' failed (exit {rc}): {tail_text(lines, 5)}\n"
                                       "On Debian/Ubuntu install the python3-venv package (apt-get install "
                                       f"python3-venv), or {self.fallback}")
            say(f"installing {', '.join(self.requirements[:4])} and their dependencies with pip "
                f"(downloads {self.download}; takes minutes)")
            self._pip(python, venv, self.requirements, say, no_deps=False)
            if self.no_deps:
                say(f"installing {', '.join(self.no_deps)} (without their own pinned dependencies)")
                self._pip(python, venv, self.no_deps, say, no_deps=True)
            say(f"checking the {self.title} environment")
            rc, lines = run_streaming([str(python), "-I", "-c", self.import_check], timeout_s=IMPORT_CHECK_TIMEOUT_S)
            if rc != 0:
                raise self._fail(venv, f"the {self.title} environment {venv} was installed but its packages do not "
                                       f"import (exit {rc}); it was removed: try again, or {self.fallback}.\n"
                                       f"{tail_text(lines)}")
            marker = venv / MARKER_NAME
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps({
                "requirements": list(self.requirements),
                **({"no_deps_requirements": list(self.no_deps)} if self.no_deps else {}),
                "python": sys.version.split()[0],
                "check": tail_text(lines, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.monotonic() - t0, 1),
            }, indent=2))
            os.replace(tmp, marker)
            say(f"{self.title} environment ready ({time.monotonic() - t0:.0f} s)")
        return python
