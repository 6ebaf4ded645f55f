"""Folders for module-scoped fixtures that go away with the fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def scratch_dir(request: pytest.FixtureRequest, factory: pytest.TempPathFactory, name: str) -> Path:
    """A new folder under pytest's base temp, removed when the requesting fixture is torn down.

    Model stores and package trees of a test module take hundreds of MB each; pytest would keep
    them to the end of the run, so a run held every module's at once."""
    path = factory.mktemp(name)
    request.addfinalizer(lambda: shutil.rmtree(path, ignore_errors=True))
    return path
