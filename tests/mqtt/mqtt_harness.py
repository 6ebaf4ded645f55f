"""A real mosquitto broker on a free loopback port, and an MQTT v5 test client (tests and bench/)."""

from __future__ import annotations

import getpass
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgewatch.daemon.testing.daemon_process import DaemonProcess, free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BARRIER_ROOT = "edgewatch-test/barrier"  # Client.sync round trips (outside edgewatch/)


class Broker:
    """mosquitto on a free loopback port; optionally with a password file and/or a TLS listener, and
    with ``verbose`` a log of every packet (:meth:`log` reads it)."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, tls: dict[str, Path] | None = None,
                 verbose: bool = False) -> None:
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
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
        if verbose:  # to a file, which mosquitto flushes line by line (unlike its stdout)
            self.log_file = workdir / "mosquitto-packets.log"
            lines += ["log_type all", f"log_dest file {self.log_file}"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/bootstrap-deps.sh --test "
                               "(apt-get install mosquitto)")
        log = self.conf.with_name("mosquitto.log")
        with log.open("ab") as out:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            with socket.socket() as s:  # polls the real signal: the listener accepts connections
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start listening on 127.0.0.1:{self.port}; its log: {log} "
                           f"({log.read_text(errors='replace')[-500:].strip()!r}); its config: {self.conf}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


class Client:
    """A test MQTT v5 client collecting every message it receives.

    Every wait is on a real signal: the constructor returns after the CONNACK, :meth:`subscribe`
    after the SUBACK, :meth:`sync` after a round trip through the broker (so every message the
    broker queued for this client before it has arrived), :meth:`wait_online` after the daemon's
    retained ``online``, which it publishes only once its own subscriptions are acknowledged.
    """

    def __init__(self, port: int, name: str, auth: tuple[str, str] | None = None, ca_file: Path | None = None,
                 timeout: float = 10.0) -> None:
        self.name = name
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()  # what wait_for has not looked at yet
        self.history: list[mqtt.MQTTMessage] = []  # everything received, in order
        self._cond = threading.Condition()
        self._acks: dict[int, list] = {}  # SUBACK mid -> reason codes
        self._barriers: set[bytes] = set()
        self._barrier_topic = f"{BARRIER_ROOT}/{name}"
        self._barrier_ready = False
        self._connack: list = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=MQTTProtocolVersion.MQTTv5)
        if auth:
            self.c.username_pw_set(*auth)
        if ca_file:
            self.c.tls_set(ca_certs=str(ca_file))
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._connack, timeout):
                self.close()
                raise AssertionError(f"test client {name}: no CONNACK from the broker on port {port} within "
                                     f"{timeout:g} s; is mosquitto running (see the Broker fixture)?")
        if self._connack[0].is_failure:
            self.close()
            raise AssertionError(f"test client {name}: the broker refused the connection ({self._connack[0]}); "
                                 "check the user and password given to Client(auth=...)")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connack.append(reason_code)
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._acks[mid] = list(reason_codes)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith(BARRIER_ROOT + "/"):  # the harness's own round trips (a '#' sees others' too)
            if msg.topic == self._barrier_topic:
                with self._cond:
                    self._barriers.add(msg.payload)
                    self._cond.notify_all()
            return
        with self._cond:
            self.history.append(msg)
            self._cond.notify_all()
        self.messages.put(msg)

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        """Subscribe and return once the broker acknowledged it (SUBACK)."""
        result, mid = self.c.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"test client {self.name}: cannot send SUBSCRIBE {topic}: {mqtt.error_string(result)}")
        with self._cond:  # the SUBACK may come before this line runs: it is kept under its mid
            if not self._cond.wait_for(lambda: mid in self._acks, timeout):
                raise AssertionError(f"test client {self.name}: no SUBACK for {topic} within {timeout:g} s")
            codes = self._acks.pop(mid)
        if any(code.is_failure for code in codes):
            raise AssertionError(f"test client {self.name}: the broker refused the subscription to {topic}: {codes}")

    def sync(self, timeout: float = 10.0) -> None:
        """Return once everything the broker queued for this client before this call has arrived:
        a message to ourselves through the broker comes after all of it (mosquitto keeps order)."""
        if not self._barrier_ready:
            self.subscribe(self._barrier_topic)
            self._barrier_ready = True
        token = uuid.uuid4().bytes
        self.c.publish(self._barrier_topic, token, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._barriers, timeout):
                raise AssertionError(f"test client {self.name}: its own message did not come back through the broker "
                                     f"within {timeout:g} s")
            self._barriers.discard(token)

    def wait_for(self, predicate, timeout: float = 20.0) -> mqtt.MQTTMessage:
        """The first message from now on (or not yet looked at) that matches; the others are passed over."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if predicate(msg):
                return msg
        raise AssertionError(f"test client {self.name}: the expected MQTT message did not arrive within {timeout:g} s")

    def wait_seen(self, predicate, timeout: float = 20.0) -> mqtt.MQTTMessage:
        """The first message ever received that matches, waiting for it if need be (unlike
        :meth:`wait_for`, blind to what an earlier wait passed over, so the order of waits is free)."""
        return self.wait_history(lambda history: next((m for m in history if predicate(m)), None), timeout)

    def wait_history(self, condition, timeout: float = 20.0):
        """Wait until ``condition(messages received so far)`` is truthy (re-checked on each new
        message), and return its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = condition(list(self.history))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"test client {self.name}: the expected MQTT messages did not arrive within "
                                         f"{timeout:g} s ({len(self.history)} received)")
                self._cond.wait(left)

    def wait_online(self, prefix: str, timeout: float = 60.0) -> None:
        """Wait until the daemon with topic prefix ``prefix`` is online: it publishes the retained
        ``{prefix}/availability`` = ``online`` only after the broker acknowledged its subscriptions,
        so jobs sent from now on reach it. (Subscribing again re-delivers the retained message.)"""
        topic = f"{prefix}/availability"
        self.subscribe(topic)
        self.wait_for(lambda m: m.topic == topic and m.payload == b"online", timeout)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def until(condition, timeout: float = 20.0, every: float = 0.2, what: str = "condition"):
    """Poll ``condition()`` (a state read over HTTP, say) until it is truthy, and return it. The pause
    is only the polling interval: what the caller waits for is the state itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(every)


def start_daemon(data_dir: Path, cache_dir: Path, port: int, node: str, client: Client | None = None,
                 **env: str) -> DaemonProcess:
    """A daemon on the broker at ``port``; with ``client``, returned once it takes jobs (its retained
    availability is ``online``, which it publishes after the SUBACK of its job subscription)."""
    d = DaemonProcess(data_dir, cache_dir, env={"EDGEWATCH_MQTT_HOST": "127.0.0.1", "EDGEWATCH_MQTT_PORT": str(port),
                                               "EDGEWATCH_NODE_ID": node, **env})
    d.start()
    if client is not None:
        try:
            client.wait_online(f"edgewatch/{node}")
        except BaseException:
            print(d.stop()[-3000:])
            raise
    return d


def send_job(client: Client, image: bytes, reply: str, **user: str) -> bytes:
    """Publish a detection job answered on ``reply``; returns its correlation data."""
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply
    corr = uuid.uuid4().bytes
    props.CorrelationData = corr
    if user:
        props.UserProperty = list(user.items())
    client.c.publish("edgewatch/jobs/detection", image, qos=1, properties=props)
    return corr
