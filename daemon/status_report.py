"""`edgewatch status`: ask the running daemon what it is doing, and say what to fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from edgewatch.daemon.config import Settings


@dataclass
class Report:
    url: str
    running: bool
    version: str | None = None
    inference: dict[str, Any] = field(default_factory=dict)
    modules: list[dict[str, Any]] = field(default_factory=list)  # each capability module's status
    models: list[str] = field(default_factory=list)
    cameras: list[dict[str, Any]] = field(default_factory=list)
    mqtt: dict[str, Any] = field(default_factory=dict)
    access: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)  # the data dir's disk
    error: str | None = None
    todo: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def daemon_url(config: Settings) -> str:
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{host}:{config.server.port}"


def collect(url: str, timeout: float = 5.0) -> Report:
    report = Report(url=url, running=False)
    try:
        with httpx.Client(base_url=url, timeout=timeout) as client:
            version = client.get("/v1/status/version").json()
            report.running = True
            report.version = version.get("message")
            report.inference = version.get("inference") or {}
            report.modules = version.get("modules") or []
            report.access = version.get("access") or {}
            report.storage = version.get("storage") or {}
            report.models = client.post("/v1/vision/custom/list").json().get("models", [])
            report.cameras = client.get("/v1/cameras").json().get("cameras", [])
            report.mqtt = client.get("/v1/status/mqtt").json().get("mqtt", {})
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        report.error = str(exc) or type(exc).__name__
    report.todo = advice(report)
    return report


def advice(r: Report) -> list[str]:
    """What a person should do next, one line each."""
    if not r.running:
        return [f"edgewatch does not answer at {r.url} ({r.error}): start it with `sudo systemctl start edgewatch` "
                "(why it stopped: `journalctl -u edgewatch -e`), or run `edgewatch serve` in a terminal"]
    todo = []
    if not r.inference.get("active"):
        todo.append("no detection model is installed: run `sudo edgewatch models install --default` "
                    "(or `sudo systemctl start edgewatch-models`)")
    for b in r.inference.get("backends", []):
        if not b.get("available") and " but " in b.get("reason", ""):  # the device is there, its runtime is not
            todo.append(f"{b['type']}: {b['reason']}")
    todo += [f"backend: {note}" for note in r.inference.get("notes", [])]
    if r.storage.get("low"):
        todo.append(f"the data dir's disk has {_size(r.storage['freeBytes'])} free: model installs and uploads may "
                    "not fit; free space (`edgewatch models remove NAME` drops a model you do not use)")
    for cam in r.cameras:
        if cam.get("enabled") and not cam.get("connected"):
            todo.append(f"camera {cam['name']} is not connected ({cam.get('last_error') or 'connecting'}): "
                        "check its URL, user:password and that it is reachable from this box")
    if not r.mqtt.get("enabled"):
        todo.append("MQTT is off: set mqtt.host in the config file (/etc/edgewatch/config.yaml for the .deb) "
                    "or EDGEWATCH_MQTT_HOST for Home Assistant, then `sudo systemctl reload edgewatch`")
    elif not r.mqtt.get("connected"):
        todo.append(f"MQTT broker {r.mqtt.get('host')}:{r.mqtt.get('port')} not connected: {r.mqtt.get('last_error')}")
    return todo


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def describe_access(summary: dict[str, Any]) -> str:
    """What needs a key, from /v1/status/version's ``access`` (the start log says the same)."""
    detect = "need a key" if summary.get("detect") == "key" else "are open to the network (no detect key)"
    admin = "need an admin key" if summary.get("admin") == "key" else "answer only trusted clients (no admin key)"
    trusted = ", ".join(summary.get("trusted_networks") or []) or "nobody"
    return (f"access: inference endpoints {detect}; settings, cameras, faces management {admin}; "
            f"trusted without a key: {trusted}")


def render(r: Report) -> str:
    if not r.running:
        return "edgewatch: not running\n" + "".join(f"  → {t}\n" for t in r.todo)
    inf = r.inference
    lines = [f"edgewatch {r.version}: running at {r.url}",
             f"  API:   {r.url}/v1/vision/detection   docs: {r.url}/schema/swagger",
             f"  accelerator in use: {inf.get('active') or 'none'} ({inf.get('executionProvider') or '-'})"]
    for b in inf.get("backends", []):
        lines.append(f"    {b['type']:12} {'available  ' if b['available'] else 'unavailable'}  {b['reason']}")
    if inf.get("model"):
        lines.append(f"  detector: {inf['model']} ({inf.get('modelReason') or '-'})")
    for m in r.modules:
        lines.append(f"  module {m.get('moduleId')}: {'ready' if m.get('ready') else 'NOT ready'}, {m.get('summary')}")
    lines.append(f"  models: {', '.join(r.models) if r.models else 'none installed'}")
    if r.storage:
        lines.append(f"  disk: {_size(r.storage['freeBytes'])} free of {_size(r.storage['totalBytes'])} (data dir)")
    if r.cameras:
        lines.append("  cameras:")
        for c in r.cameras:
            if c.get("connected"):
                state = f"connected, {c.get('fps_out') or 0:.1f} fps"
            else:
                state = "disabled" if not c.get("enabled") else f"NOT connected: {c.get('last_error') or 'connecting'}"
            lines.append(f"    {c['name']:12} {state}")
    else:
        lines.append("  cameras: none (add them under `cameras:` in the config or with POST /v1/cameras)")
    m = r.mqtt
    if m.get("enabled"):
        lines.append(f"  MQTT: {'connected to' if m.get('connected') else 'NOT connected to'} {m.get('host')}:"
                     f"{m.get('port')} (MQTT {m.get('protocol')}{', TLS' if m.get('tls') else ''}), topics under "
                     f"{m.get('prefix')}")
    else:
        lines.append("  MQTT: off")
    if r.access:
        lines.append(f"  {describe_access(r.access)}")
    if r.todo:
        lines.append("to do:")
        lines += [f"  → {t}" for t in r.todo]
    else:
        lines.append("all good.")
    return "\n".join(lines) + "\n"
