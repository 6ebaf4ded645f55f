"""Slow or idle clients cannot exhaust the server (daemon/http_limits.py): the real daemon process,
raw sockets, short limits set through EDGEWATCH_SERVER_* so that the file runs in seconds."""

from __future__ import annotations

import concurrent.futures
import json
import select
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from edgewatch.daemon.testing.daemon_process import DaemonProcess

MAX_CONNECTIONS = 6
HEADER_TIMEOUT_S = 3.0
KEEP_ALIVE_S = 1.0
BODY_TIMEOUT_S = 2.0
MIN_RATE = 1000
SLACK_S = 2.0  # a loaded 2-core box may take this much longer to act on a timer


@pytest.fixture(scope="module")
def limited(installed_data_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("slow") / "data"
    shutil.copytree(installed_data_dir, data)
    proc = DaemonProcess(data, cache_dir, env={
        "EDGEWATCH_SERVER_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "EDGEWATCH_SERVER_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "EDGEWATCH_SERVER_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
        "EDGEWATCH_SERVER_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "EDGEWATCH_SERVER_BODY_MIN_BYTES_PER_S": str(MIN_RATE),
    })
    proc.start()
    yield proc
    proc.stop()


def connect(daemon: DaemonProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", daemon.port), timeout=10)


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection; and when it closed (monotonic)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, time.monotonic()
        if not chunk:
            return data, time.monotonic()
        data += chunk
    raise AssertionError(f"the server did not close the connection within {timeout} s (got {data[:200]!r})")


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def multipart_head(daemon: DaemonProcess, length: int) -> tuple[bytes, bytes]:
    boundary = "slowclientboundary"
    head = (f"POST /v1/vision/detection HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n").encode()
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head, part


def test_a_slow_body_is_cut_off_while_others_are_served(limited: DaemonProcess, photo_bytes: dict[str, bytes]) -> None:
    head, part = multipart_head(limited, 200_000)
    stop = threading.Event()

    def normal_client() -> list[tuple[int, float]]:
        answers = []
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                t0 = time.monotonic()
                r = client.post(limited.url + "/v1/vision/detection",
                                files={"image": ("bus.jpg", photo_bytes["bus"], "image/jpeg")})
                labels = {p["label"] for p in r.json().get("predictions", [])} if r.status_code == 200 else set()
                answers.append((r.status_code if "bus" in labels else -r.status_code, time.monotonic() - t0))
        return answers

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        normals = [pool.submit(normal_client) for _ in range(2)]
        sock = connect(limited)
        sock.sendall(head + part)
        start = time.monotonic()
        raw = b""
        # a byte every 0.2 s: never idle for long, but far under body_min_bytes_per_s
        while time.monotonic() - start < BODY_TIMEOUT_S + 3 * SLACK_S:
            try:
                sock.sendall(b"\xff")
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.2)[0]:
                break
        raw, closed_at = read_until_closed(sock, SLACK_S)
        sock.close()
        stop.set()
        answers = [a for f in normals for a in f.result()]

    assert BODY_TIMEOUT_S - 0.2 <= closed_at - start <= BODY_TIMEOUT_S + SLACK_S
    status, headers, body = parse(raw)
    assert status == 408 and headers["connection"] == "close"
    envelope = json.loads(body)
    assert envelope["success"] is False and envelope["code"] == 408 and "server.body_timeout_s" in envelope["error"]
    # meanwhile the others got their detections, and quickly
    assert len(answers) >= 4 and all(code == 200 for code, _ in answers), answers
    assert max(s for _, s in answers) < 5


def test_b_headers_never_finished_are_cut_off(limited: DaemonProcess) -> None:
    silent = connect(limited)    # opens and sends nothing
    slow = connect(limited)      # a request line, then headers a byte at a time
    big = connect(limited)       # headers without end
    opened = time.monotonic()
    slow.sendall(f"GET /v1/status/ping HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n".encode())
    big.sendall(b"GET /v1/status/ping HTTP/1.1\r\nX-Filler: " + b"a" * 40_000)
    closed = None
    while time.monotonic() - opened < HEADER_TIMEOUT_S + 3 * SLACK_S:
        try:
            slow.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([slow], [], [], 0.2)[0]:
            break
    raw, closed = read_until_closed(slow, SLACK_S)
    assert HEADER_TIMEOUT_S - 0.2 <= closed - opened <= HEADER_TIMEOUT_S + SLACK_S
    status, headers, body = parse(raw)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body) == {"success": False, "code": 408, "error": json.loads(body)["error"]}
    assert "server.header_timeout_s" in json.loads(body)["error"]
    raw, _ = read_until_closed(silent, SLACK_S)
    assert raw == b""  # nothing asked, nothing answered: just closed
    raw, _ = read_until_closed(big, SLACK_S)
    status, _, body = parse(raw)
    assert status == 431 and "server.max_header_bytes" in json.loads(body)["error"]
    for s in (silent, slow, big):
        s.close()
    assert httpx.get(limited.url + "/v1/status/ping", timeout=5).status_code == 200


def test_c_idle_keep_alive_connections_are_closed(limited: DaemonProcess) -> None:
    sock = connect(limited)
    sock.sendall(f"GET /v1/status/ping HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            parse(data)[1]["content-length"]):
        data += sock.recv(65536)
    answered = time.monotonic()
    assert parse(data)[0] == 200 and "connection" not in parse(data)[1]  # kept alive
    raw, closed = read_until_closed(sock, KEEP_ALIVE_S + SLACK_S)
    assert raw == b"" and KEEP_ALIVE_S - 0.2 <= closed - answered <= KEEP_ALIVE_S + SLACK_S
    sock.close()


def test_d_over_the_connection_limit_a_clean_503_then_recovery(limited: DaemonProcess,
                                                               photo_bytes: dict[str, bytes]) -> None:
    time.sleep(KEEP_ALIVE_S + 0.5)  # earlier tests' connections are gone
    idle = [connect(limited) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.3)  # accepted by the server
    extra = connect(limited)
    extra.sendall(f"GET /v1/status/ping HTTP/1.1\r\nHost: 127.0.0.1:{limited.port}\r\n\r\n".encode())
    status, headers, body = parse(read_until_closed(extra, SLACK_S)[0])
    assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["success"] is False and "server.max_connections" in json.loads(body)["error"]
    extra.close()
    # a client library reads it as a plain JSON error (DeepStack clients parse the envelope)
    r = httpx.post(limited.url + "/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"])}, timeout=10)
    assert r.status_code == 503 and r.json()["code"] == 503
    # over twice the limit, a new connection is reset at once (no descriptor held for it)
    idle += [connect(limited) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.3)
    flood = connect(limited)
    raw, closed_at = read_until_closed(flood, SLACK_S)
    assert raw == b""
    flood.close()
    for s in idle:
        s.close()
    time.sleep(0.3)
    r = httpx.post(limited.url + "/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"])}, timeout=30)
    assert r.status_code == 200 and r.json()["success"] is True
    out = limited.stop()
    assert "over server.max_connections (6): answered 503" in out
    assert "Traceback" not in out
