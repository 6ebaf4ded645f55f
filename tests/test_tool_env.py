"""Converter tool venvs: built once, reused, rebuilt after an interruption, clear when pip fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgewatch.models.conversion.tool_env import MARKER_NAME, ConverterEnvError, ToolEnv

SIX = ToolEnv(prefix="test-six", title="test tool", requirements=("six==1.17.0",),
              import_check="import six; print('six', six.__version__)", size="tiny", download="a few kB",
              min_free_bytes=1, fallback="do without")


def test_built_once_then_reused_and_recorded(tmp_path: Path) -> None:
    lines: list[str] = []
    python = SIX.ensure(tmp_path, lines.append)
    assert python.exists() and SIX.ready(tmp_path) and SIX.python(tmp_path) == python
    marker = json.loads((SIX.dir(tmp_path) / MARKER_NAME).read_text())
    assert marker["requirements"] == ["six==1.17.0"] and marker["check"] == "six 1.17.0"
    assert any("creating the test tool environment" in ln for ln in lines)
    again: list[str] = []
    assert SIX.ensure(tmp_path, again.append) == python and again == []  # nothing rebuilt


def test_half_built_folder_is_rebuilt(tmp_path: Path) -> None:
    venv = SIX.dir(tmp_path)
    (venv / "bin").mkdir(parents=True)
    (venv / "junk").write_text("left by a killed build")  # no marker: not ready
    assert not SIX.ready(tmp_path)
    SIX.ensure(tmp_path)
    assert SIX.ready(tmp_path) and not (venv / "junk").exists()


def test_pip_failure_names_the_package_and_the_next_step(tmp_path: Path) -> None:
    broken = ToolEnv(prefix="test-broken", title="test tool", requirements=("edgewatch-no-such-package==0.0.1",),
                     import_check="pass", size="tiny", download="nothing", min_free_bytes=1, fallback="do without")
    with pytest.raises(ConverterEnvError) as err:
        broken.ensure(tmp_path)
    assert "edgewatch-no-such-package" in str(err.value) and "do without" in str(err.value)
    assert not broken.dir(tmp_path).exists() and broken.python(tmp_path) is None
