"""`edgewatch serve` as a real process on a free loopback port (tests and bench/)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess:
    """`edgewatch serve` as a real process on a free loopback port."""

    def __init__(self, data_dir: Path, cache_dir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None, wrapper: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "EDGEWATCH_DATA_DIR": str(data_dir), "EDGEWATCH_CACHE_DIR": str(cache_dir),
                    **(env or {})}
        self.args = args or []
        self.wrapper = wrapper or []  # a command that execs the daemon's command line after it (unshare …)
        self.proc: subprocess.Popen[bytes] | None = None
        # the output goes to a file, not a pipe: a pipe nobody reads fills up and blocks a chatty daemon
        self.output = tempfile.TemporaryFile()
        self.started_at = 0.0
        self.stderr: int | object = subprocess.STDOUT  # or a file, to stand in for the journal's stream

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for ping; returns seconds from spawn to the first answered ping."""
        import httpx

        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "edgewatch.daemon.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             *self.args], env=self.env, stdout=self.output, stderr=self.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.read_output()[-3000:]}")
            try:
                if httpx.get(self.url + "/v1/status/ping", timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started_at
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("daemon did not answer ping in time")

    def stop(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return self.read_output()

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would end it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def read_output(self) -> str:
        """Everything the daemon has written so far (stdout, and stderr unless redirected)."""
        fd = self.output.fileno()  # pread: the daemon shares this file's offset and goes on writing at it
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
