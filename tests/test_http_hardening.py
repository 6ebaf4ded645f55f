"""What a browser page, a careless client or a hostile one can do over HTTP: refused with a JSON
4xx, nothing changed, no secret echoed, and the daemon keeps serving (the real app, in-process)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from litestar.testing import TestClient

from edgewatch.daemon.api.browser_guard import BrowserGuard
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import ConfigError, load_settings
from edgewatch.daemon.modules.detection import MODULE_ID
from edgewatch.daemon.logbuffer import LogBuffer
from edgewatch.daemon.redaction import printable, redact

SETTINGS = f"/v1/settings/{MODULE_ID}"
SECRET = "s3cret-Pw9"


def make_client(data_dir: Path, cache_dir: Path, config_file: Path | None = None, **overrides) -> TestClient:
    return TestClient(create_app(load_settings(config_file, data_dir=data_dir, cache_dir=cache_dir, **overrides),
                                 config_file), base_url="http://127.0.0.1:32168")


@pytest.fixture()
def client(data_dir: Path, cache_dir: Path):
    with make_client(data_dir, cache_dir) as c:
        yield c


def log_text(client: TestClient) -> str:
    return json.dumps(client.get("/v1/log/list", params={"count": 1000}).json())


# -- browsers: Origin, Host, content types ----------------------------------------------------

def test_a_foreign_origin_cannot_change_settings(client: TestClient) -> None:
    before = client.get(SETTINGS).json()["settings"]["min_confidence"]
    r = client.post(SETTINGS, data={"name": "min_confidence", "value": "0.9"},
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["success"] is False
    assert "server.allowed_origins" in r.json()["error"]
    assert client.get(SETTINGS).json()["settings"]["min_confidence"] == before
    # the box's own pages (same origin) and scripts without Origin still can
    r = client.post(SETTINGS, data={"name": "min_confidence", "value": "0.3"},
                    headers={"Origin": "http://127.0.0.1:32168"})
    assert r.status_code == 200 and r.json()["settings"]["min_confidence"] == 0.3


def test_cross_site_fetch_metadata_and_null_origin_are_refused(client: TestClient) -> None:
    r = client.post(SETTINGS, data={"name": "min_confidence", "value": "0.9"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    r = client.post(SETTINGS, data={"name": "min_confidence", "value": "0.9"}, headers={"Origin": "null"})
    assert r.status_code == 403
    r = client.delete("/v1/cameras/whatever", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_an_allowed_origin_may_change_settings_and_read_answers(data_dir: Path, cache_dir: Path) -> None:
    origin = "https://ha.example:8123"
    with make_client(data_dir, cache_dir, server={"allowed_origins": [origin]}) as c:
        r = c.post(SETTINGS, data={"name": "min_confidence", "value": "0.35"}, headers={"Origin": origin})
        assert r.status_code == 200
        assert r.headers.get("access-control-allow-origin") == origin
        assert c.post(SETTINGS, data={"name": "min_confidence", "value": "0.9"},
                      headers={"Origin": "https://other.example"}).status_code == 403


def test_dns_rebinding_host_is_refused_on_admin_routes_only(client: TestClient, photo_bytes) -> None:
    evil = {"Host": "attacker.example"}
    for method, path in (("GET", SETTINGS), ("GET", "/v1/cameras"), ("GET", "/v1/log/list")):
        r = client.request(method, path, headers=evil)
        assert r.status_code == 403, path
        assert "server.allowed_hosts" in r.json()["error"]
    # the NVR routes answer any name a client uses
    r = client.post("/v1/vision/detection", files={"image": ("bus.jpg", photo_bytes["bus"], "image/jpeg")},
                    headers=evil)
    assert r.status_code == 200 and r.json()["success"] is True
    assert client.get("/v1/status/ping", headers=evil).status_code == 200
    # names that public DNS cannot serve, IP addresses and the loopback name are fine
    for host in ("orangepi5.local:32168", "edgewatch:32168", "192.168.1.20:32168", "[::1]:32168", "localhost",
                 "box.home.arpa"):
        assert client.get(SETTINGS, headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_adds_names_and_star_turns_the_check_off(data_dir: Path, cache_dir: Path) -> None:
    with make_client(data_dir, cache_dir, server={"allowed_hosts": ["ai.example.com", ".corp.example"]}) as c:
        assert c.get(SETTINGS, headers={"Host": "ai.example.com:32168"}).status_code == 200
        assert c.get(SETTINGS, headers={"Host": "nvr.corp.example"}).status_code == 200
        assert c.get(SETTINGS, headers={"Host": "attacker.example"}).status_code == 403
    with make_client(data_dir, cache_dir, server={"allowed_hosts": ["*"]}) as c:
        assert c.get(SETTINGS, headers={"Host": "attacker.example"}).status_code == 200


def test_guard_decisions() -> None:
    guard = BrowserGuard([], [], "orangepi5")
    assert guard.host_ok("orangepi5.example.org") is False
    assert guard.host_ok("ORANGEPI5") and guard.host_ok("10.0.0.7:80") and guard.host_ok("")
    assert guard.origin_ok("http://10.0.0.7:32168", "10.0.0.7:32168")
    assert not guard.origin_ok("http://10.0.0.7:32168", "10.0.0.8:32168")
    assert not guard.origin_ok("file://", "10.0.0.7:32168")


def test_settings_refuse_text_plain(client: TestClient) -> None:
    r = client.post(SETTINGS, content=b'{"min_confidence": 0.9}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert client.get(SETTINGS).json()["settings"]["min_confidence"] != 0.9
    r = client.post(SETTINGS, json={"min_confidence": 0.45})
    assert r.status_code == 200 and r.json()["settings"]["min_confidence"] == 0.45


# -- size limits and the event loop ------------------------------------------------------------

def test_large_urlencoded_and_json_bodies_are_refused_before_parsing(client: TestClient) -> None:
    big = b"name=" + b"x" * 200_000 + b"&value=1"
    r = client.post(SETTINGS, content=big, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and "multipart/form-data" in r.json()["error"]
    r = client.post(SETTINGS, content=json.dumps({"model": "x" * 200_000}).encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    many = "&".join(f"f{i}=1" for i in range(500)).encode()
    r = client.post(SETTINGS, content=many, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "too many fields" in r.json()["error"]
    assert client.get("/v1/status/ping").status_code == 200


def test_huge_client_text_is_capped_in_answers_and_the_log(client: TestClient) -> None:
    name = "n" * 3_000_000  # in a multipart field, within the body limit
    for _ in range(5):
        r = client.post(SETTINGS, files={"name": (None, name), "value": (None, "1")})
        assert r.status_code == 400
        assert len(r.content) < 4_000
    entries = client.get("/v1/log/list", params={"count": 1000}).json()["entries"]
    assert entries and max(len(e["entry"]) for e in entries) < 4_000
    assert client.get("/v1/status/ping").status_code == 200


def test_log_buffer_caps_entries_and_total_size() -> None:
    buf = LogBuffer(capacity=100, max_chars=50_000)
    logger = logging.getLogger("edgewatch.test.logbuffer")
    logger.propagate = False
    logger.addHandler(buf)
    try:
        for i in range(40):
            logger.warning("line %d %s", i, "y" * 10_000)
        entries = buf.after(0, 1000)
        assert sum(len(e["entry"]) for e in entries) <= 50_000
        assert entries[-1]["entry"].startswith("line 39 ")  # the newest are kept
        assert all(len(e["entry"]) < 2_100 for e in entries)
        for i in range(300):
            logger.warning("short %d", i)
        assert len(buf.after(0, 1000)) == 100
    finally:
        logger.removeHandler(buf)


# -- small ones ---------------------------------------------------------------------------------

def test_a_path_like_model_setting_is_a_400(client: TestClient) -> None:
    r = client.post(SETTINGS, data={"name": "model", "value": "../../etc"})
    assert r.status_code == 400 and "invalid model name" in r.json()["error"]
    assert client.get(SETTINGS).json()["settings"]["model"] == "auto"


def test_control_characters_in_a_path_cannot_forge_log_lines(client: TestClient) -> None:
    r = client.get("/v1/nosuch%0a2026-01-01 00:00:00 ERROR edgewatch: forged%0d%1b[31m")
    assert r.status_code == 404
    entries = [e["entry"] for e in client.get("/v1/log/list", params={"count": 1000}).json()["entries"]]
    hits = [e for e in entries if "forged" in e]
    assert hits, entries[-5:]
    assert all("\n" not in e and "\r" not in e and "\x1b" not in e for e in hits)
    assert any("\\n2026-01-01" in e for e in hits)


# -- secrets ------------------------------------------------------------------------------------

def test_settings_never_echo_secrets_from_the_environment(data_dir: Path, cache_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWATCH_CAMERAS", json.dumps([{"name": "door", "url": f"rtsp://admin:{SECRET}@127.0.0.1:9/s",
                                                         "enabled": False}]))
    monkeypatch.setenv("EDGEWATCH_MQTT", json.dumps({"host": "127.0.0.1", "port": 9, "password": SECRET + "m"}))
    monkeypatch.setenv("EDGEWATCH_MQTT_PASSWORD", SECRET + "x")
    with make_client(data_dir, cache_dir) as c:
        r = c.get(SETTINGS)
        assert r.status_code == 200
        env = r.json()["environmentVariables"]
        assert "EDGEWATCH_CAMERAS" in env and "admin:***@" in env["EDGEWATCH_CAMERAS"]
        assert SECRET not in r.text
        assert SECRET not in c.get("/v1/cameras").text
        assert SECRET not in log_text(c)


def test_config_errors_never_echo_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"mqtt:\n  host: broker\n  password: [{SECRET}]\n"
                   f"cameras:\n  - name: door\n    url: rtsp://admin:{SECRET}@10.0.0.2/s\n    kind: mjpeg\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, data_dir=tmp_path)
    text = str(exc.value)
    assert "mqtt.password" in text and "cameras.0" in text
    assert SECRET not in text
    cfg.write_text(f"cameras: [{{name: door, url: 'rtsp://admin:{SECRET}@h/s'\n")  # broken YAML
    with pytest.raises(ConfigError) as exc:
        load_settings(cfg, data_dir=tmp_path)
    assert "not valid YAML" in str(exc.value) and SECRET not in str(exc.value)


def test_a_refused_reload_logs_no_camera_password(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("log_level: info\n")
    with make_client(data_dir, cache_dir, cfg) as c:
        cfg.write_text(f"cameras:\n  - name: door\n    url: rtsp://admin:{SECRET}@10.0.0.2/s\n    kind: snapshot\n")
        c.blocking_portal.call(c.app.state.services.reload)
        text = log_text(c)
        assert "reload refused" in text
        assert SECRET not in text


def test_redaction_and_printable() -> None:
    assert redact(f"rtsp://admin:{SECRET}@10.0.0.2:554/s") == "rtsp://admin:***@10.0.0.2:554/s"
    assert SECRET not in redact(json.dumps({"EDGEWATCH_MQTT": json.dumps({"password": SECRET})}))
    assert SECRET not in redact(f"api_key={SECRET}&x=1") and "x=1" in redact(f"api_key={SECRET}&x=1")
    assert redact("http://host:8080/path") == "http://host:8080/path"
    assert printable("a\nb\x1b", 10) == "a\\nb\\x1b"
    assert printable("z" * 50, 10).startswith("z" * 10 + "…")
