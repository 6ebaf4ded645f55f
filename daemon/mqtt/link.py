"""The broker connection: availability with last will, discovery, and inference jobs.

Jobs arrive on ``edgewatch/jobs/<command>`` through the shared subscription
``$share/edgewatch/edgewatch/jobs/<command>``, so every box on the broker takes a share with no
coordinator of ours. A job is the raw image bytes, with an MQTT v5 response topic, correlation
data and optional user properties (``min_confidence``, ``model``); the answer is the same JSON
envelope as ``POST /v1/vision/detection``, errors included.

The daemon publishes only where it means to: a job's response topic must be a topic of the
client's own (never under the discovery prefix, ``edgewatch/`` or this box's prefix, no wildcards,
no ``$``), and under ``mqtt.response_topic_prefix`` when that is set. A refused job, and a job
without a response topic, are answered on ``{prefix}/jobs/errors``. A job over
``server.max_body_bytes`` is refused (413) before its bytes are copied or decoded. Camera states,
events and error answers pass through :func:`redact` before they are published.

``{prefix}/availability`` = ``online`` is published once the broker has acknowledged the
subscriptions (SUBACK), so a client that sees it can send jobs and know they will be taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgewatch.daemon.config import Settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.modules.base import CapabilityModule
from edgewatch.daemon.modules.errors import BadRequest, NotFound, RequestError, TooLarge
from edgewatch.daemon.metrics import metrics_for
from edgewatch.daemon.mqtt.discovery import (box_entities, camera_entities, last_plate_topic, stats_camera_entities,
                                             stats_entities, stats_topic, subject_entities, subject_topics)
from edgewatch.daemon.mqtt.state import MqttState
from edgewatch.daemon.host_readings import THERMAL_ROOT, cpu_temperature
from edgewatch.daemon.mqtt.stats import StatsPublisher
from edgewatch.daemon.mqtt.events import event_payload
from edgewatch.daemon.pipeline.annotate import annotated_jpeg
from edgewatch.daemon.pipeline.tracker import Event, Track
from edgewatch.daemon.redaction import is_secret_name, printable, redact, register_secret

log = logging.getLogger(__name__)

JOBS_ROOT = "edgewatch/jobs"
SHARE_GROUP = "edgewatch"
RESERVED_ROOT = "edgewatch"  # every box's default prefix and the jobs root: never a response topic
SUBJECTS_EVERY_S = 30.0  # how often camera updates look for people registered or deleted since
LAST_SEEN_EVERY_S = 60.0  # a person in view at the same camera: their last-seen time is refreshed this often
MAX_TOPIC_BYTES = 65535      # the MQTT limit on a topic name


def _under(topic: str, prefix: str) -> bool:
    """Whether ``topic`` is ``prefix`` or below it, level by level (``ab/c`` is not under ``a``)."""
    prefix = prefix.rstrip("/")
    return topic == prefix or topic.startswith(prefix + "/")


def response_topic_problem(topic: str, *, prefix: str, discovery_prefix: str,
                           allowed_prefix: str | None) -> str | None:
    """Why a job may not be answered on ``topic`` (a message saying which topics may), or None."""
    roots = {f"{discovery_prefix.rstrip('/')}/", f"{RESERVED_ROOT}/", f"{prefix.rstrip('/')}/"}
    reserved = sorted(r for r in roots if not any(r != o and r.startswith(o) for o in roots))
    rule = (f"answers go to a topic of the client's own: not empty, at most {MAX_TOPIC_BYTES} bytes, no NUL, "
            f"no '+' or '#', not starting with '$', and not under {', '.join(reserved)}")
    if allowed_prefix:
        rule += f"; this box also allows only topics under {allowed_prefix.rstrip('/')}/ (mqtt.response_topic_prefix)"
    else:
        rule += "; set mqtt.response_topic_prefix to allow only the topics under one prefix"
    why = None
    if not topic:
        why = "it is empty"
    elif len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        why = f"it is longer than {MAX_TOPIC_BYTES} bytes"
    elif "\x00" in topic:
        why = "it contains a NUL character"
    elif "+" in topic or "#" in topic:
        why = "it contains a wildcard ('+' or '#')"
    elif topic.startswith("$"):
        why = "it starts with '$' (broker topics)"
    else:
        for root in reserved:
            if _under(topic, root):
                why = f"it is under {root}, where this box and Home Assistant keep their own topics"
                break
        else:
            if allowed_prefix and not _under(topic, allowed_prefix):
                why = f"it is not under {allowed_prefix.rstrip('/')}/"
    if why is None:
        return None
    return f"response topic '{printable(topic, 100)}' refused: {why}; {rule}"


def _scrub(value: Any, key: str = "") -> Any:
    """``value`` (a JSON-able structure) with every secret in its strings hidden."""
    if isinstance(value, str):
        return "***" if key and value and is_secret_name(key) else redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


class MqttLink:
    def __init__(self, config: Settings, modules: dict[str, CapabilityModule], queue: InferenceQueue,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config, self.mq = config, config.mqtt
        self.modules, self.queue, self.loop = modules, queue, loop
        self.commands = {command: m for m in modules.values() for command in m.mqtt_commands}
        self.node_id = config.node_id
        self.prefix = (self.mq.prefix or f"edgewatch/{self.node_id}").rstrip("/")
        self.availability = f"{self.prefix}/availability"
        self._inference_ms: float | None = None
        self._last_status = 0.0
        self.cameras: dict[str, list[str]] = {}  # camera -> labels with entities
        self._counts: dict[tuple[str, str], int] = {}
        self.subjects: set[str] = set()  # people with presence entities
        self._subjects_checked = float("-inf")
        self._present: dict[str, set[str]] = {}  # camera -> people in view there
        self._last_seen: dict[str, tuple[str, float]] = {}  # person -> (camera, when published)
        # people entities are touched by paho's thread (connect) and the event loop (camera updates)
        self._people_lock = threading.RLock()
        self._naming: set[str] = set()  # cameras that recognise faces
        self._plates: set[str] = set()  # cameras that read plates (a "last plate" sensor each)
        self.connected = False
        self.subscribed = False  # the broker acknowledged the subscriptions (jobs reach this box)
        self.last_error: str | None = None
        self._subscriptions = [(f"{self.mq.discovery_prefix}/status", 1)] + [
            (f"$share/{SHARE_GROUP}/{JOBS_ROOT}/{command}", 1) for command in self.commands]
        self._subscribe_mid: int | None = None
        self._metrics = metrics_for(queue)  # the app's Prometheus counters (None outside an app)
        self.stats: StatsPublisher | None = None  # the key figures on {prefix}/stats, while started
        self.thermal_root = THERMAL_ROOT
        register_secret(self.mq.password)  # never in a message, a log line or an answer
        if self.mq.response_topic_prefix:
            problem = response_topic_problem(f"{self.mq.response_topic_prefix.rstrip('/')}/x", prefix=self.prefix,
                                             discovery_prefix=self.mq.discovery_prefix, allowed_prefix=None)
            if problem:
                log.error("MQTT: mqtt.response_topic_prefix %s cannot work, every MQTT job would be refused (%s); "
                          "choose a prefix of your own, e.g. replies/", printable(self.mq.response_topic_prefix),
                          problem)
        v5 = self.mq.protocol == "5"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"edgewatch-{self.node_id}",
                                  protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311)
        if self.mq.username:
            self.client.username_pw_set(self.mq.username, self.mq.password)
        if self.mq.tls:
            self.client.tls_set(ca_certs=str(self.mq.ca_file) if self.mq.ca_file else None,
                                cert_reqs=ssl.CERT_REQUIRED)
        self.client.will_set(self.availability, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        log.info("MQTT: connecting to %s:%d as edgewatch-%s (topics under %s)", self.mq.host, self.mq.port,
                 self.node_id, self.prefix)
        self.client.connect_async(self.mq.host, self.mq.port, keepalive=self.mq.keepalive)
        self.client.loop_start()
        if self.mq.stats_interval_s > 0:
            self.stats = StatsPublisher(self._publish_stats, stats_topic(self.prefix), self.node_id, self.queue,
                                        self._metrics, self.loop, self.mq.stats_interval_s, self.thermal_root).start()

    def stop(self) -> None:
        if self.stats is not None:
            self.stats.stop()
            self.stats = None
        if self.client.is_connected():
            self.client.publish(self.availability, "offline", qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.connected = False
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("MQTT: %s; check mqtt.username/password (EDGEWATCH_MQTT_USERNAME/PASSWORD) and the broker's "
                      "ACLs; retrying with backoff", self.last_error)
            return
        self.connected, self.last_error, self.subscribed = True, None, False
        log.info("MQTT: connected to %s:%d", self.mq.host, self.mq.port)
        self.publish_discovery()
        self.publish_status(force=True)
        # one SUBSCRIBE, one SUBACK: availability goes online in _on_subscribe, once jobs reach this box
        # (paho runs its callbacks on one thread, so the SUBACK cannot overtake the mid set here)
        result, self._subscribe_mid = client.subscribe(self._subscriptions)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("MQTT: cannot subscribe (%s); the connection will be retried with backoff",
                      mqtt.error_string(result))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any],
                      properties: Any) -> None:
        if mid != self._subscribe_mid:
            return
        for (topic, _), code in zip(self._subscriptions, reason_codes):
            if not code.is_failure:
                continue
            if topic.startswith("$share/"):
                log.error("MQTT: the broker refused the subscription to %s (%s): MQTT inference jobs will not reach "
                          "this box; allow this user to subscribe to %s/# and to shared subscriptions "
                          "($share/%s/...) in the broker's ACL", topic, code, JOBS_ROOT, SHARE_GROUP)
            else:
                log.error("MQTT: the broker refused the subscription to %s (%s): discovery will not be republished "
                          "when Home Assistant restarts; allow this user to subscribe to it in the broker's ACL",
                          topic, code)
        self.subscribed = True
        client.publish(self.availability, "online", qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was, self.connected = self.connected, False
        if reason_code != 0 and was:
            self.last_error = f"lost the broker: {reason_code}"
            log.warning("MQTT: %s; reconnecting with backoff", self.last_error)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.connected = False
        # paho calls this from inside its `except OSError`, so the reason is still at hand
        reason = sys.exc_info()[1]
        self.last_error = f"cannot reach the broker at {self.mq.host}:{self.mq.port}" + (f": {reason}" if reason else "")
        log.warning("MQTT: %s; check mqtt.host/port (and mqtt.tls); retrying with backoff", self.last_error)

    def state(self) -> MqttState:
        """What /v1/status/mqtt and `edgewatch status` show."""
        return MqttState(enabled=True, connected=self.connected, last_error=self.last_error, host=self.mq.host,
                         port=self.mq.port, protocol=self.mq.protocol, tls=self.mq.tls,
                         client_id=f"edgewatch-{self.node_id}", prefix=self.prefix)

    # -- publishing -----------------------------------------------------------------------------
    def publish_discovery(self) -> None:
        for topic, payload in box_entities(self.node_id, self.prefix, self.mq.discovery_prefix).items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for camera, labels in self.cameras.items():
            self._publish_camera_discovery(camera, labels)
        self._publish_stats_discovery()
        self._sync_subjects(force=True)

    def _publish_stats_discovery(self) -> None:
        """The stats sensors while mqtt.stats_interval_s is on; while it is off their configs and the
        last figures are emptied (Home Assistant deletes the sensors). No thermal zone: no temperature sensor."""
        on = self.mq.stats_interval_s > 0
        box = stats_entities(self.node_id, self.prefix, self.mq.discovery_prefix)
        shown = stats_entities(self.node_id, self.prefix, self.mq.discovery_prefix,
                               temperature=cpu_temperature(self.thermal_root) is not None) if on else {}
        for topic, payload in box.items():
            self.client.publish(topic, json.dumps(shown[topic]) if topic in shown else b"", qos=1, retain=True)
        for camera in list(self.cameras):  # the event loop may add one meanwhile
            self._publish_stats_camera(camera, on)
        if not on:
            self.client.publish(stats_topic(self.prefix), b"", qos=1, retain=True)

    def _publish_stats_camera(self, camera: str, on: bool) -> None:
        for topic, payload in stats_camera_entities(self.node_id, self.prefix, self.mq.discovery_prefix,
                                                    camera).items():
            self.client.publish(topic, json.dumps(payload) if on else b"", qos=1, retain=True)

    def _publish_stats(self, topic: str, payload: str) -> None:
        """The stats thread's message: only while connected (figures queued for later would be stale)."""
        if self.client.is_connected():
            self.client.publish(topic, payload, qos=1, retain=True)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if self._metrics is not None:
            self._metrics.mqtt_published.inc()

    def _publish_camera_discovery(self, camera: str, labels: list[str]) -> None:
        for topic, payload in camera_entities(self.node_id, self.prefix, self.mq.discovery_prefix, camera,
                                              labels, reads_plates=camera in self._plates).items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        for label in labels:  # a known starting state: nobody there until a detection says so
            self._publish_count(camera, label, self._counts.get((camera, label), 0), force=True)

    def add_camera(self, camera: str, labels: list[str], names_people: bool = False, reads_plates: bool = False) -> None:
        """``names_people``: the camera recognises faces; registered people get presence entities
        while at least one camera does. ``reads_plates``: the camera reads plates; it gets a "last
        plate" sensor."""
        self.cameras[camera] = labels
        if not reads_plates and camera in self._plates:  # no longer reads plates: its sensor goes
            self._plates.discard(camera)
            topic = [t for t in camera_entities(self.node_id, self.prefix, self.mq.discovery_prefix, camera, [],
                                                reads_plates=True) if "last_plate" in t]
            for t in topic:
                self.client.publish(t, b"", qos=1, retain=True)
        elif reads_plates:
            self._plates.add(camera)
        if self.client.is_connected():
            self._publish_camera_discovery(camera, labels)
            self._publish_stats_camera(camera, self.mq.stats_interval_s > 0)
        with self._people_lock:
            if names_people == (camera in self._naming):
                return
            if names_people:
                self._naming.add(camera)
            else:
                self._naming.discard(camera)
            if self.client.is_connected():
                self._sync_subjects_locked(force=True)

    def remove_camera(self, camera: str) -> None:
        """Empty retained configs make Home Assistant delete the camera's entities."""
        labels = self.cameras.pop(camera, [])
        reads_plates = camera in self._plates
        self._plates.discard(camera)
        for topic in camera_entities(self.node_id, self.prefix, self.mq.discovery_prefix, camera, labels,
                                     reads_plates=reads_plates):
            self.client.publish(topic, b"", qos=1, retain=True)
        self._publish_stats_camera(camera, False)
        with self._people_lock:
            self._people_in_view(camera, set())
            if camera in self._naming:
                self._naming.discard(camera)
                self._sync_subjects_locked(force=True)

    # -- people (recognised faces) ----------------------------------------------------------------
    def _sync_subjects(self, force: bool = False) -> None:
        """Give every registered person presence entities while a camera recognises faces, and
        remove those of people deleted (all of them when no camera recognises faces any more)."""
        with self._people_lock:
            self._sync_subjects_locked(force)

    def _sync_subjects_locked(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._subjects_checked < SUBJECTS_EVERY_S:
            return
        self._subjects_checked = now
        try:
            known = set()
            if self._naming:  # no camera recognises faces: no presence entities to offer
                known = {name for m in self.modules.values() for name in m.known_subjects()}
        except Exception:  # noqa: BLE001 - a store trouble must not stop the camera events
            log.exception("MQTT: cannot list the registered people; their presence entities are not updated")
            return
        in_view = set().union(*self._present.values())
        for name in sorted(self.subjects - known - in_view):
            self.subjects.discard(name)
            for topic in [*subject_entities(self.node_id, self.prefix, self.mq.discovery_prefix, name),
                          *subject_topics(self.prefix, name)]:
                self.client.publish(topic, b"", qos=1, retain=True)
        for name in sorted(known - self.subjects) if not force else sorted(known | self.subjects):
            self._announce_subject(name, in_view)

    def _announce_subject(self, name: str, in_view: set[str]) -> None:
        self.subjects.add(name)
        for topic, payload in subject_entities(self.node_id, self.prefix, self.mq.discovery_prefix, name).items():
            self.client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self.client.publish(subject_topics(self.prefix, name)[0], "ON" if name in in_view else "OFF", qos=1,
                            retain=True)

    def _people_in_view(self, camera: str, names: set[str]) -> None:
        """Record who ``camera`` has in view now; publish the presence of those who came or went."""
        before = set().union(*self._present.values())
        self._present[camera] = names
        after = set().union(*self._present.values())
        for name in sorted(names - self.subjects):  # recognised before the periodic check saw them
            self._announce_subject(name, after)
        for name in sorted(before ^ after):
            self.client.publish(subject_topics(self.prefix, name)[0], "ON" if name in after else "OFF", qos=1,
                                retain=True)

    def _people_seen(self, camera: str, visible: list[Track]) -> None:
        self._sync_subjects()
        with self._people_lock:
            self._people_in_view(camera, {t.sub_label[0] for t in visible if t.sub_label})
        now = time.monotonic()
        for track in visible:
            if track.sub_label is None or track.missed:
                continue
            name, score = track.sub_label
            last = self._last_seen.get(name)
            if last is None or last[0] != camera or now - last[1] >= LAST_SEEN_EVERY_S:
                self._last_seen[name] = (camera, now)
                seen_at = {"camera": camera, "score": score, "object_id": track.id, "timestamp": track.frame_time,
                           "time": datetime.fromtimestamp(track.frame_time, timezone.utc).isoformat(timespec="seconds")}
                self.client.publish(subject_topics(self.prefix, name)[1], json.dumps(seen_at), qos=1, retain=True)

    def _publish_count(self, camera: str, label: str, count: int, force: bool = False) -> None:
        if force or self._counts.get((camera, label)) != count:
            self._counts[(camera, label)] = count
            self.client.publish(f"{self.prefix}/{camera}/{label.replace(' ', '_')}/count", str(count), qos=1,
                                retain=True)

    def camera_update(self, camera: str, events: list[Event], counts: dict[str, int], frame: Any,
                      visible: list[Track]) -> None:
        """Publish a camera's object events, per-label counts and snapshots (the pipeline's sink):
        all from its confirmed objects."""
        labels = self.cameras.setdefault(camera, [])
        for label in counts:
            if label not in labels:  # an unlisted label appeared: give it entities too
                labels.append(label)
                self._publish_camera_discovery(camera, [label])
        for label in labels:
            self._publish_count(camera, label, counts.get(label, 0))
        self._people_seen(camera, visible)
        for event in events:
            self.client.publish(f"{self.prefix}/{camera}/events",
                                json.dumps(_scrub(event_payload(event, camera, self.node_id))), qos=1)
            if event.after.plate is not None and event.after.plate != event.before.plate:
                self._publish_plate(camera, event)
        if frame is None:
            return
        for label in dict.fromkeys(e.track.label for e in events if e.kind != "end"):
            found = [t for t in visible if t.label == label and t.missed == 0]  # boxes from this frame
            self.client.publish(f"{self.prefix}/{camera}/{label.replace(' ', '_')}/snapshot",
                                annotated_jpeg(frame, found), qos=0, retain=True)

    def _publish_plate(self, camera: str, event: Event) -> None:
        """The camera's last plate (its Home Assistant sensor): the plate, who it belongs to if known,
        which object and when."""
        after = event.after
        text, score = after.plate
        payload = {"plate": text, "score": round(score, 3), "name": after.sub_label[0] if after.sub_label else None,
                   "label": after.label, "object_id": after.id, "timestamp": after.frame_time,
                   "time": datetime.fromtimestamp(after.frame_time, timezone.utc).isoformat(timespec="seconds")}
        self.client.publish(last_plate_topic(self.prefix, camera), json.dumps(payload), qos=1, retain=True)

    def camera_state(self, camera: str, state: dict[str, Any]) -> None:
        # a camera's url and last error can carry its password, whatever the reader made of them
        self.client.publish(f"{self.prefix}/{camera}/state", json.dumps(_scrub(state)), qos=1, retain=True)

    def publish_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < 10:
            return
        self._last_status = now
        first = next((s for s in (m.status() for m in self.modules.values()) if s.backend), None)
        status = {"node_id": self.node_id, "backend": first.backend if first else None,
                  "execution_provider": first.executionProvider if first else None,
                  "inference_ms": round(self._inference_ms, 1) if self._inference_ms is not None else None}
        self.client.publish(f"{self.prefix}/status", json.dumps(status), qos=0, retain=True)

    # -- messages -------------------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"{self.mq.discovery_prefix}/status":
            if msg.payload.strip().lower() == b"online":
                log.info("MQTT: Home Assistant came online; republishing discovery")
                self.publish_discovery()
            return
        command = msg.topic.removeprefix(f"{JOBS_ROOT}/")
        future: Future = asyncio.run_coroutine_threadsafe(self._job(command, msg), self.loop)
        future.add_done_callback(lambda f: f.exception() and log.error("MQTT job failed: %r", f.exception()))

    async def _job(self, command: str, msg: mqtt.MQTTMessage) -> None:
        received = time.perf_counter()
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        user = dict(getattr(props, "UserProperty", None) or [])
        refused = None
        if response_topic:  # a client must not make this box publish wherever it likes
            refused = response_topic_problem(response_topic, prefix=self.prefix,
                                             discovery_prefix=self.mq.discovery_prefix,
                                             allowed_prefix=self.mq.response_topic_prefix)
        reply_to = response_topic if response_topic and refused is None else None
        module = self.commands.get(command)
        try:
            if refused is not None:
                raise BadRequest(refused)
            if not response_topic:
                raise BadRequest("the request has no MQTT v5 response topic: set one so the answer can be sent")
            if module is None:
                raise NotFound(f"unknown job command '{printable(command, 100)}'; known: {', '.join(self.commands)}")
            size, limit = len(msg.payload), self.config.server.max_body_bytes
            if size > limit:  # refused before a byte of it is copied or decoded, as REST does
                raise TooLarge(f"the job is {size} bytes, over this box's limit of {limit} bytes: send a smaller "
                               "image, or raise server.max_body_bytes (EDGEWATCH_SERVER_MAX_BODY_BYTES)")
            payload = msg.payload if isinstance(msg.payload, bytes) else bytes(msg.payload)
            result = await module.run_job(command, payload, user, self.queue, received)
            inference_ms = getattr(result, "inferenceMs", None)
            if inference_ms is not None:
                self._inference_ms = inference_ms if self._inference_ms is None else \
                    0.8 * self._inference_ms + 0.2 * inference_ms
            self.publish_status()
        except RequestError as exc:
            # errors echo what the client sent (a model name, a topic): never a secret in them
            if module is None:
                result = _Refusal(success=False, error=redact(exc.message), code=exc.status)
            else:
                result = module.error_envelope(module.mqtt_commands[command], exc.status, redact(exc.message),
                                               received)
        body = msgspec.json.encode(result)
        out = Properties(PacketTypes.PUBLISH)
        if correlation is not None:
            out.CorrelationData = correlation
        out.UserProperty = [("processedBy", self.node_id)]
        properties = out if self.mq.protocol == "5" else None  # publish properties exist in MQTT v5 only
        if reply_to is None:  # nowhere (allowed) to answer: say so where operators look, never silence
            log.warning("MQTT job on %s refused (%d): %s; answered on %s/jobs/errors", printable(msg.topic, 100),
                        result.code, printable(result.error, 400), self.prefix)
            self.client.publish(f"{self.prefix}/jobs/errors", body, qos=1, properties=properties)
        else:
            self.client.publish(reply_to, body, qos=1, properties=properties)
        if self._metrics is not None:
            self._metrics.mqtt_job_replies.labels(str(getattr(result, "code", 200))).inc()


class _Refusal(msgspec.Struct):
    """The answer to a job no module takes."""

    success: bool
    error: str
    code: int


def start_link(config: Settings, modules: dict[str, CapabilityModule], queue: InferenceQueue) -> MqttLink | None:
    """Connect to the configured broker (in the background), or say that MQTT is off."""
    if not config.mqtt.host:
        log.info("MQTT off: no broker configured (set mqtt.host in the config or EDGEWATCH_MQTT_HOST)")
        return None
    link = MqttLink(config, modules, queue, asyncio.get_running_loop())
    link.start()
    return link
