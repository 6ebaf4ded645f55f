"""MQTT log-in and transport options against a real mosquitto: a refused log-in is visible and
harmless, MQTT 3.1.1 with a username works, and TLS with the box's own CA works."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from mqtt_harness import Broker, Client, until

from edgewatch.daemon.testing.daemon_process import DaemonProcess

USERS = {"edgewatch": "right-password", "ha": "ha-password"}


@pytest.fixture()
def auth_broker(tmp_path: Path):
    b = Broker(tmp_path, users=USERS)
    b.start()
    yield b
    b.stop()


def mqtt_state(daemon: DaemonProcess) -> dict:
    return httpx.get(f"{daemon.url}/v1/status/mqtt", timeout=5).json()["mqtt"]


def wait_state(daemon: DaemonProcess, predicate, timeout: float = 20) -> dict:
    """Poll /v1/status/mqtt: a refused log-in or an untrusted certificate has no MQTT signal to wait
    for (nothing reaches the broker), so the daemon's own state is the signal."""
    seen: list[dict] = []

    def matches() -> bool:
        seen.append(mqtt_state(daemon))
        return predicate(seen[-1])

    try:
        until(matches, timeout, what="the daemon's MQTT state matching")
    except AssertionError:
        raise AssertionError(f"MQTT state never matched within {timeout:g} s: {seen[-1:]}") from None
    return seen[-1]


def test_refused_login_is_visible_and_the_daemon_keeps_serving(auth_broker, data_dir, cache_dir, photo_bytes) -> None:
    daemon = DaemonProcess(data_dir, cache_dir, env={
        "EDGEWATCH_MQTT_HOST": "127.0.0.1", "EDGEWATCH_MQTT_PORT": str(auth_broker.port),
        "EDGEWATCH_MQTT_USERNAME": "edgewatch", "EDGEWATCH_MQTT_PASSWORD": "wrong", "EDGEWATCH_NODE_ID": "refused"})
    daemon.start()
    try:
        state = wait_state(daemon, lambda s: s["last_error"] is not None)
        assert state["connected"] is False and "refused" in state["last_error"]
        r = httpx.post(f"{daemon.url}/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"])}, timeout=30)
        assert r.status_code == 200 and r.json()["success"] is True, "REST keeps working without the broker"
    finally:
        log = daemon.stop()
    assert "broker refused the connection" in log and "username/password" in log


def test_mqtt_311_with_a_username(auth_broker, data_dir, cache_dir) -> None:
    ha = Client(auth_broker.port, "ha", auth=("ha", USERS["ha"]))
    ha.subscribe("edgewatch/v311/availability")
    ha.subscribe("homeassistant/sensor/v311/+/config")
    daemon = DaemonProcess(data_dir, cache_dir, env={
        "EDGEWATCH_MQTT_HOST": "127.0.0.1", "EDGEWATCH_MQTT_PORT": str(auth_broker.port),
        "EDGEWATCH_MQTT_USERNAME": "edgewatch", "EDGEWATCH_MQTT_PASSWORD": USERS["edgewatch"],
        "EDGEWATCH_MQTT_PROTOCOL": "3.1.1", "EDGEWATCH_NODE_ID": "v311"})
    daemon.start()
    try:
        ha.wait_seen(lambda m: m.topic == "edgewatch/v311/availability" and m.payload == b"online")
        ha.wait_seen(lambda m: m.topic == "homeassistant/sensor/v311/backend/config")  # sent before online
        state = mqtt_state(daemon)
        assert state["connected"] is True and state["protocol"] == "3.1.1" and state["last_error"] is None
    finally:
        daemon.stop()
        ha.close()


def _make_ca_and_server_cert(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, as a user would make for their broker."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.pem"))
    return {"cafile": d / "ca.pem", "certfile": d / "server.pem", "keyfile": d / "server.key"}


def test_tls_with_the_users_ca(tmp_path: Path, data_dir, cache_dir) -> None:
    certs = _make_ca_and_server_cert(tmp_path)
    broker = Broker(tmp_path, tls=certs)
    broker.start()
    watcher = Client(broker.port, "watcher", ca_file=certs["cafile"])
    watcher.subscribe("edgewatch/tls/availability")
    daemon = DaemonProcess(data_dir, cache_dir, env={
        "EDGEWATCH_MQTT_HOST": "127.0.0.1", "EDGEWATCH_MQTT_PORT": str(broker.port), "EDGEWATCH_MQTT_TLS": "true",
        "EDGEWATCH_MQTT_CA_FILE": str(certs["cafile"]), "EDGEWATCH_NODE_ID": "tls"})
    try:
        daemon.start()
        watcher.wait_for(lambda m: m.topic == "edgewatch/tls/availability" and m.payload == b"online")
        assert mqtt_state(daemon)["tls"] is True
    finally:
        daemon.stop()
        watcher.close()
        broker.stop()


def test_tls_with_an_unknown_ca_is_reported(tmp_path: Path, data_dir, cache_dir) -> None:
    certs = _make_ca_and_server_cert(tmp_path)
    broker = Broker(tmp_path, tls=certs)
    broker.start()
    daemon = DaemonProcess(data_dir, cache_dir, env={  # the system CA bundle does not know our test CA
        "EDGEWATCH_MQTT_HOST": "127.0.0.1", "EDGEWATCH_MQTT_PORT": str(broker.port), "EDGEWATCH_MQTT_TLS": "true",
        "EDGEWATCH_NODE_ID": "badtls"})
    try:
        daemon.start()
        state = wait_state(daemon, lambda s: s["last_error"] is not None)
        assert state["connected"] is False and "cannot reach the broker" in state["last_error"]
    finally:
        log = daemon.stop()
        broker.stop()
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log
