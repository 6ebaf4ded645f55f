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
