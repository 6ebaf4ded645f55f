"""The module contract: a capability added as one class on edgewatch.daemon.modules.base and one
entry in the module list is served, configured, reported and dispatched by the daemon's own
machinery, with nothing else touched."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Controller, Request, post
from litestar.testing import TestClient
from pydantic import BaseModel, Field

from edgewatch.daemon import app as app_module
from edgewatch.daemon.api.forms import read_form
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules import MODULES
from edgewatch.daemon.modules.base import CapabilityModule, ModuleStatus
from edgewatch.daemon.modules.errors import BadRequest
from edgewatch.daemon.services import ServicesDep


class EchoSettings(BaseModel):
    greeting: str = Field("hello", min_length=1)


class EchoAnswer(msgspec.Struct):
    success: bool
    message: str
    moduleId: str
    command: str
    code: int = 200


class EchoController(Controller):
    path = "/v1/echo"
    opt = {"module": "EchoTest"}

    @post("/say", status_code=200, opt={"command": "say"})
    async def say(self, request: Request, services: ServicesDep) -> EchoAnswer:
        form = await read_form(request)
        return services.modules["EchoTest"].say(form.fields.get("text", ""))  # type: ignore[attr-defined]


class EchoModule(CapabilityModule):
    module_id = "EchoTest"
    module_name = "Echo (test)"
    settings_model = EchoSettings
    mqtt_commands = {"echo": "say"}

    @classmethod
    def controllers(cls) -> list[type[Controller]]:
        return [EchoController]

    def settings_from(self, config, saved: dict[str, Any]) -> EchoSettings:
        return EchoSettings.model_validate(saved)

    def config_changed(self, old, new) -> bool:
        return False

    def start(self) -> None:
        self.started = True

    def apply(self, settings: EchoSettings) -> None:
        self.settings = settings

    def close(self) -> None:
        self.started = False

    def status(self) -> ModuleStatus:
        return ModuleStatus(self.module_id, self.module_name, True, f"greeting {self.settings.greeting!r}")

    def error_envelope(self, command: str, status: int, message: str, received_at: float) -> EchoAnswer:
        return EchoAnswer(success=False, message=message, moduleId=self.module_id, command=command, code=status)

    def say(self, text: str) -> EchoAnswer:
        if not text:
            raise BadRequest("send a 'text' field to echo")
        return EchoAnswer(success=True, message=f"{self.settings.greeting}, {text}", moduleId=self.module_id,
                          command="say")

    async def run_job(self, command, payload, params, queue, received_at) -> EchoAnswer:
        return self.say(payload.decode())


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cache_dir: Path):
    monkeypatch.setattr(app_module, "MODULES", (*MODULES, EchoModule))
    config = load_settings(data_dir=tmp_path / "data", cache_dir=cache_dir)
    with TestClient(app_module.create_app(config)) as c:
        yield c


def test_a_registered_module_is_served_configured_and_reported(client: TestClient) -> None:
    ok = client.post("/v1/echo/say", data={"text": "box"}).json()
    assert ok == {"success": True, "message": "hello, box", "moduleId": "EchoTest", "command": "say", "code": 200}
    # its errors are its own envelope, named by the route that took the request
    bad = client.post("/v1/echo/say", data={"other": "x"})
    assert bad.status_code == 400
    assert bad.json() == {"success": False, "message": "send a 'text' field to echo", "moduleId": "EchoTest",
                          "command": "say", "code": 400}
    # its settings through /v1/settings/{moduleId}, validated by its own model, persisted
    changed = client.post("/v1/settings/EchoTest", data={"name": "greeting", "value": "hej"})
    assert changed.status_code == 200 and changed.json()["settings"] == {"greeting": "hej"}
    assert client.post("/v1/echo/say", data={"text": "box"}).json()["message"] == "hej, box"
    assert client.post("/v1/settings/EchoTest", data={"name": "greeting", "value": ""}).status_code == 400
    assert client.post("/v1/settings/EchoTest", data={"name": "volume", "value": "3"}).status_code == 400
    # reported next to detection
    modules = {m["moduleId"]: m for m in client.get("/v1/status/version").json()["modules"]}
    assert set(modules) == {m.module_id for m in MODULES} | {"EchoTest"}
    assert modules["EchoTest"] == {"moduleId": "EchoTest", "moduleName": "Echo (test)", "ready": True,
                                   "summary": "greeting 'hej'", "backend": None, "executionProvider": None,
                                   "notes": []}
    assert "greeting 'hej'" in app_module.serving_status(client.app)
    # an unknown route answers a neutral envelope, no module's
    assert client.post("/v1/echo/shout").json() == {
        "success": False, "code": 404, "error": "no such endpoint POST /v1/echo/shout; see /schema for the API"}


def test_mqtt_jobs_reach_the_module_that_answers_the_command(client: TestClient) -> None:
    import json

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgewatch.daemon.mqtt.link import MqttLink

    services = client.app.state.services
    link = MqttLink(services.config, services.modules, services.queue, asyncio.new_event_loop())
    assert "$share/edgewatch/edgewatch/jobs/echo" in {topic for topic, _ in link._subscriptions}
    published: list[tuple[str, dict]] = []
    link.client.publish = lambda topic, body, **kw: published.append((topic, json.loads(body)))  # no broker here

    def job(payload: bytes) -> None:
        msg = mqtt.MQTTMessage(topic=b"edgewatch/jobs/echo")
        msg.payload = payload
        msg.properties = Properties(PacketTypes.PUBLISH)
        msg.properties.ResponseTopic = "replies/1"
        asyncio.run(link._job("echo", msg))

    job(b"broker")
    job(b"")
    answers = [body for topic, body in published if topic == "replies/1"]
    assert answers == [
        {"success": True, "message": "hello, broker", "moduleId": "EchoTest", "command": "say", "code": 200},
        {"success": False, "message": "send a 'text' field to echo", "moduleId": "EchoTest", "command": "say",
         "code": 400}]
