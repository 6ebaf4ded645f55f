"""The daemon keeps large heap blocks mapped between requests (see edgewatch.daemon.malloc_tuning)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_glibc_accepts_the_thresholds() -> None:
    # In a child process: the thresholds stay set for the rest of the process that sets them.
    code = "from edgewatch.daemon.malloc_tuning import keep_large_blocks; print(keep_large_blocks())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
