"""The JSON of an object event on ``<prefix>/<camera>/events``: edgewatch's own fields, plus
Frigate's ``before``/``after`` object states, so Frigate-style automations work unchanged."""

from __future__ import annotations

from typing import Any

from edgewatch.daemon.pipeline.tracker import Event, ObjectState


def event_payload(event: Event, camera: str, node_id: str) -> dict[str, Any]:
    after = event.after
    return {"type": event.kind, "id": after.id, "camera": camera, "label": after.label, "score": round(after.score, 3),
            "top_score": round(after.top_score, 3), "box": list(after.box), "zones": list(after.current_zones),
            "sub_label": after.sub_label[0] if after.sub_label else None,
            "sub_label_score": round(after.sub_label[1], 3) if after.sub_label else None,
            "recognized_license_plate": after.plate[0] if after.plate else None,
            "recognized_license_plate_score": round(after.plate[1], 3) if after.plate else None,
            "start_time": after.start_time, "end_time": after.end_time, "node_id": node_id,
            "before": object_state(event.before, camera), "after": object_state(after, camera)}


def object_state(state: ObjectState, camera: str) -> dict[str, Any]:
    """An object as Frigate's events show it (the fields edgewatch knows)."""
    x1, y1, x2, y2 = state.box
    w, h = x2 - x1, y2 - y1
    return {"id": state.id, "camera": camera, "frame_time": state.frame_time, "label": state.label,
            "sub_label": [state.sub_label[0], round(state.sub_label[1], 3)] if state.sub_label else None,
            "recognized_license_plate": [state.plate[0], round(state.plate[1], 3)] if state.plate else None,
            "score": round(state.score, 3), "top_score": round(state.top_score, 3),
            "false_positive": False, "start_time": state.start_time, "end_time": state.end_time,
            "box": [x1, y1, x2, y2], "area": w * h, "ratio": round(w / h, 3) if h else 0.0,
            "current_zones": list(state.current_zones), "entered_zones": list(state.entered_zones),
            "stationary": state.stationary, "active": not state.stationary}
