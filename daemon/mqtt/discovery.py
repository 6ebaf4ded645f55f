"""Home Assistant MQTT discovery payloads for this box (retained, under the discovery prefix)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from edgewatch.daemon import __version__


def device(node_id: str) -> dict[str, Any]:
    return {"identifiers": [f"edgewatch_{node_id}"], "name": f"edgewatch {node_id}", "manufacturer": "edgewatch",
            "model": "edge AI appliance", "sw_version": __version__}


def box_entities(node_id: str, prefix: str, discovery_prefix: str) -> dict[str, dict[str, Any]]:
    """topic -> config payload for the box's own entities (inference speed, backend in use)."""
    common = {"availability_topic": f"{prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device(node_id), "state_topic": f"{prefix}/status"}
    entities = {
        "inference_ms": {"name": "Inference time", "value_template": "{{ value_json.inference_ms }}",
                         "unit_of_measurement": "ms", "state_class": "measurement", "icon": "mdi:timer-outline"},
        "backend": {"name": "Inference backend", "value_template": "{{ value_json.backend }}", "icon": "mdi:chip"},
    }
    return {f"{discovery_prefix}/sensor/{node_id}/{key}/config":
            {**common, **entity, "unique_id": f"edgewatch_{node_id}_{key}", "object_id": f"edgewatch_{node_id}_{key}"}
            for key, entity in entities.items()}


def last_plate_topic(prefix: str, camera: str) -> str:
    return f"{prefix}/{camera}/last_plate"


def camera_entities(node_id: str, prefix: str, discovery_prefix: str, camera: str,
                    labels: list[str], reads_plates: bool = False) -> dict[str, dict[str, Any]]:
    """topic -> config payload for one camera: per label an occupancy binary_sensor, a count sensor
    and the latest snapshot as an image entity; the camera's connection state; and for a camera that
    reads plates, its last plate (the plate as state, who and when as attributes)."""
    cam_device = {"identifiers": [f"edgewatch_{node_id}_{camera}"], "name": f"{camera} (edgewatch {node_id})",
                  "manufacturer": "edgewatch", "model": "camera", "via_device": f"edgewatch_{node_id}"}
    common = {"availability_topic": f"{prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": cam_device}
    out: dict[str, dict[str, Any]] = {}

    def add(component: str, key: str, payload: dict[str, Any]) -> None:
        uid = f"edgewatch_{node_id}_{camera}_{key}"
        out[f"{discovery_prefix}/{component}/{node_id}/{camera}_{key}/config"] = {
            **common, **payload, "unique_id": uid, "object_id": uid}

    for label in labels:
        slug = label.replace(" ", "_")
        count_topic = f"{prefix}/{camera}/{slug}/count"
        add("binary_sensor", f"{slug}_occupancy", {"name": f"{label} occupancy", "state_topic": count_topic,
                                                     "value_template": "{{ 'ON' if value | int > 0 else 'OFF' }}",
                                                     "device_class": "occupancy"})
        add("sensor", f"{slug}_count", {"name": f"{label} count", "state_topic": count_topic,
                                         "state_class": "measurement", "icon": "mdi:counter"})
        add("image", f"{slug}_snapshot", {"name": f"{label} snapshot", "image_topic": f"{prefix}/{camera}/{slug}/snapshot",
                                           "content_type": "image/jpeg"})
    add("sensor", "state", {"name": "camera state", "state_topic": f"{prefix}/{camera}/state",
                            "value_template": "{{ 'connected' if value_json.connected else 'disconnected' }}",
                            "json_attributes_topic": f"{prefix}/{camera}/state", "icon": "mdi:cctv"})
    if reads_plates:
        topic = last_plate_topic(prefix, camera)
        add("sensor", "last_plate", {"name": "last plate", "state_topic": topic,
                                     "value_template": "{{ value_json.plate }}", "json_attributes_topic": topic,
                                     "icon": "mdi:card-text-outline"})
    return out


def subject_slug(name: str) -> str:
    """A topic level and entity id for a person's name (any text): its ASCII letters and digits plus
    a short hash, so two names never share one and unicode names get one too."""
    ascii_part = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:32]
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return f"{ascii_part}_{digest}" if ascii_part else f"person_{digest}"


def subject_topics(prefix: str, name: str) -> tuple[str, str]:
    """(presence topic, last-seen topic) of a recognised person."""
    base = f"{prefix}/people/{subject_slug(name)}"
    return f"{base}/presence", f"{base}/last_seen"


def subject_entities(node_id: str, prefix: str, discovery_prefix: str, name: str) -> dict[str, dict[str, Any]]:
    """topic -> config payload for one registered person: a presence binary_sensor (ON while any
    camera has them in view) and a sensor naming the camera that saw them last (its time and score as
    attributes)."""
    presence, last_seen = subject_topics(prefix, name)
    slug = subject_slug(name)
    common = {"availability_topic": f"{prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device(node_id)}
    entities = {
        ("binary_sensor", "presence"): {"name": f"{name} presence", "state_topic": presence,
                                        "payload_on": "ON", "payload_off": "OFF", "device_class": "presence"},
        ("sensor", "last_seen"): {"name": f"{name} last seen at", "state_topic": last_seen,
                                  "value_template": "{{ value_json.camera }}", "json_attributes_topic": last_seen,
                                  "icon": "mdi:account-eye"},
    }
    out = {}
    for (component, key), entity in entities.items():
        uid = f"edgewatch_{node_id}_person_{slug}_{key}"
        out[f"{discovery_prefix}/{component}/{node_id}/person_{slug}_{key}/config"] = {
            **common, **entity, "unique_id": uid, "object_id": uid}
    return out


def stats_topic(prefix: str) -> str:
    """The retained key figures of the box (``daemon/mqtt/stats.py``)."""
    return f"{prefix}/stats"


# the stats sensors of the box: key (the payload's field) -> name and Home Assistant's unit and classes
STATS_SENSORS: dict[str, dict[str, Any]] = {
    "inference_ms": {"name": "Inference time (mean)", "unit_of_measurement": "ms", "device_class": "duration",
                     "state_class": "measurement", "suggested_display_precision": 1},
    "requests_per_s": {"name": "Requests per second", "unit_of_measurement": "req/s", "state_class": "measurement",
                       "icon": "mdi:swap-horizontal"},
    "errors": {"name": "Request errors", "state_class": "measurement", "icon": "mdi:alert-circle-outline"},
    "queue_depth": {"name": "Inference queue depth", "state_class": "measurement", "icon": "mdi:tray-full"},
    "rss_mb": {"name": "Memory (RSS)", "unit_of_measurement": "MB", "device_class": "data_size",
               "state_class": "measurement"},
    "cpu_percent": {"name": "CPU", "unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:cpu-64-bit"},
    "open_fds": {"name": "Open file descriptors", "state_class": "measurement", "icon": "mdi:file-multiple-outline"},
    "threads": {"name": "Threads", "state_class": "measurement", "icon": "mdi:format-list-numbered"},
    "uptime_s": {"name": "Uptime", "unit_of_measurement": "s", "device_class": "duration", "icon": "mdi:timer-sand"},
    "cpu_temp_c": {"name": "CPU temperature", "unit_of_measurement": "°C", "device_class": "temperature",
                   "state_class": "measurement"},
}
# per camera: key (its field under cameras.<camera>) -> the same
STATS_CAMERA_SENSORS: dict[str, dict[str, Any]] = {
    "fps_in": {"name": "fps in", "unit_of_measurement": "fps", "state_class": "measurement",
               "icon": "mdi:camera-timer"},
    "fps_out": {"name": "fps out", "unit_of_measurement": "fps", "state_class": "measurement",
                "icon": "mdi:camera-timer"},
    "motion_gated_pct": {"name": "motion-gated frames", "unit_of_measurement": "%", "state_class": "measurement",
                         "icon": "mdi:motion-pause-outline"},
}


def stats_entities(node_id: str, prefix: str, discovery_prefix: str,
                   temperature: bool = True) -> dict[str, dict[str, Any]]:
    """topic -> config payload for the box's stats sensors (diagnostic, on the box's device);
    ``temperature``: the box has a thermal zone (else no CPU temperature sensor)."""
    common = {"availability_topic": f"{prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device(node_id), "state_topic": stats_topic(prefix),
              "entity_category": "diagnostic"}
    out = {}
    for key, entity in STATS_SENSORS.items():
        if key == "cpu_temp_c" and not temperature:
            continue
        uid = f"edgewatch_{node_id}_stats_{key}"
        out[f"{discovery_prefix}/sensor/{node_id}/stats_{key}/config"] = {
            **common, **entity, "value_template": f"{{{{ value_json.{key} }}}}", "unique_id": uid, "object_id": uid}
    return out


def stats_camera_entities(node_id: str, prefix: str, discovery_prefix: str, camera: str) -> dict[str, dict[str, Any]]:
    """topic -> config payload for one camera's stats sensors (diagnostic, on the box's device with
    its other stats sensors, named after the camera); the value is unknown while the camera does not run."""
    common = {"availability_topic": f"{prefix}/availability", "payload_available": "online",
              "payload_not_available": "offline", "device": device(node_id), "state_topic": stats_topic(prefix),
              "entity_category": "diagnostic"}
    out = {}
    for key, entity in STATS_CAMERA_SENSORS.items():
        uid = f"edgewatch_{node_id}_stats_{camera}_{key}"
        template = (f"{{{{ value_json.cameras['{camera}'].{key} if '{camera}' in value_json.cameras "
                    "else None }}")
        out[f"{discovery_prefix}/sensor/{node_id}/stats_{camera}_{key}/config"] = {
            **common, **entity, "name": f"{camera} {entity['name']}", "value_template": template, "unique_id": uid,
            "object_id": uid}
    return out
