"""A real mosquitto broker on a free loopback port, and an MQTT v5 test client (tests and bench/)."""

from __future__ import annotations

import getpass
import queue
import shutil
import socket
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from daemon_process import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on a free loopback port; optionally with a password file and/or a TLS listener."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, tls: dict[str, Path] | None = None) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # run as whoever runs the tests (as root mosquitto would switch to a user that cannot read tmp_path)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stdout", f"user {getpass.getuser()}"]
        if users:
            passwd = workdir / "mosquitto.passwd"
            passwd.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls:  # cafile, certfile, keyfile
            lines += [f"{key} {path}" for key, path in tls.items()]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/bootstrap-deps.sh --test "
                               "(apt-get install mosquitto)")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Client:
    """A test MQTT v5 client collecting every message it receives."""

    def __init__(self, port: int, name: str, auth: tuple[str, str] | None = None, ca_file: Path | None = None) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5)
        if auth:
            self.c.username_pw_set(*auth)
        if ca_file:
            self.c.tls_set(ca_certs=str(ca_file))
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def subscribe(self, topic: str) -> None:
        self.c.subscribe(topic, qos=1)
        time.sleep(0.2)

    def wait_for(self, predicate, timeout: float = 20.0) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(msg):
                return msg
        raise AssertionError("expected MQTT message did not arrive")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


