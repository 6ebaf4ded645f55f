"""Home Assistant MQTT discovery payloads for this box (retained, under the discovery prefix)."""

from __future__ import annotations

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


def camera_entities(node_id: str, prefix: str, discovery_prefix: str, camera: str,
                    labels: list[str]) -> dict[str, dict[str, Any]]:
    """topic -> config payload for one camera: per label an occupancy binary_sensor, a count sensor
    and the latest snapshot as an image entity; and the camera's connection state."""
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
    return out
