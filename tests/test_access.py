"""Access control (daemon/access.py): keys with a scope, sent three ways, the trusted networks, the
401/403 envelopes, and that no key is ever echoed. TestClient requests come from 127.0.0.1 (the box
itself) unless a test sends ``x-test-client-host`` (tests/conftest.py) to stand for a LAN client."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from edgewatch.daemon.access import decide, hash_key
from edgewatch.daemon.app import create_app
from edgewatch.daemon.cli import main
from edgewatch.daemon.config import AccessConfig, ConfigError, load_settings
from edgewatch.daemon.testing.daemon_process import DaemonProcess

LAN = {"x-test-client-host": "192.168.1.20"}
NVR_KEY = "nvr-key-Zq4vJ1c9kT0pL2mN8xW5yR7bH3sD6fG0aE1u"
ADMIN_KEY = "admin-key-P9tY4oI1uE0aG6fD3sH7bR5yW8xN2mL0pT"
KEYS = {"nvr": {"hash": hash_key(NVR_KEY), "scope": "detect"}, "ops": {"hash": hash_key(ADMIN_KEY), "scope": "admin"}}


def client_for(data_dir: Path, cache_dir: Path, **access) -> TestClient:
    return TestClient(create_app(load_settings(data_dir=data_dir, cache_dir=cache_dir, access=access)))


def detect(client: TestClient, image: bytes, headers: dict[str, str] | None = None, **fields: str) -> httpx.Response:
    return client.post("/v1/vision/detection", files={"image": image}, data=fields, headers={**LAN, **(headers or {})})


def test_policy_table() -> None:
    none, keyed = AccessConfig(), AccessConfig(keys=KEYS)
    detect_only = AccessConfig(keys={"nvr": KEYS["nvr"]})
    assert decide(none, "detect", "192.168.1.20", None).caller == "open"
    assert decide(none, "admin", "127.0.0.1", None).caller == "trusted"
    assert decide(none, "admin", "::ffff:127.0.0.1", None).caller == "trusted"  # IPv4 on a dual-stack socket
    assert decide(none, "admin", "192.168.1.20", ADMIN_KEY).status == 403  # no admin key configured: a key cannot help
    assert decide(none, "public", "192.168.1.20", None).caller == "public"
    assert decide(keyed, "detect", "192.168.1.20", None).status == 401
    assert decide(keyed, "detect", "192.168.1.20", NVR_KEY).caller == "nvr"
    assert decide(keyed, "detect", "192.168.1.20", ADMIN_KEY).caller == "ops"  # admin covers detect
    assert decide(keyed, "admin", "192.168.1.20", NVR_KEY).status == 403
    assert decide(keyed, "admin", "192.168.1.20", ADMIN_KEY).caller == "ops"
    assert decide(keyed, "detect", "192.168.1.20", "guess").status == 403
    assert decide(detect_only, "admin", "192.168.1.20", NVR_KEY).status == 403
    assert decide(detect_only, "admin", "127.0.0.1", None).caller == "trusted"
    admin_only = AccessConfig(keys={"ops": KEYS["ops"]})  # an admin key never locks out an NVR that sends none
    assert decide(admin_only, "detect", "192.168.1.20", None).caller == "open"
    assert decide(admin_only, "admin", "192.168.1.20", None).status == 401
    nobody = AccessConfig(keys=KEYS, trusted_networks=[])
    assert decide(nobody, "admin", "127.0.0.1", None).status == 401  # behind a reverse proxy on the box
    lan = AccessConfig(trusted_networks=["192.168.1.0/24"])
    assert decide(lan, "admin", "192.168.1.20", None).caller == "trusted"
    assert decide(lan, "admin", "192.168.2.20", None).status == 403


def test_config_keeps_only_hashes() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(access={"keys": {"nvr": {"hash": NVR_KEY, "scope": "detect"}}})
    assert "never the key itself" in str(err.value) and NVR_KEY not in str(err.value)
    with pytest.raises(ConfigError, match="scope"):
        load_settings(access={"keys": {"nvr": {"hash": hash_key(NVR_KEY), "scope": "root"}}})


def test_without_keys_nvr_routes_are_open_and_admin_routes_are_local(data_dir: Path, cache_dir: Path,
                                                                      photo_bytes) -> None:
    with client_for(data_dir, cache_dir) as client:
        r = detect(client, photo_bytes["bus"])
        assert r.status_code == 200 and "person" in {p["label"] for p in r.json()["predictions"]}
        assert client.get("/v1/status/ping", headers=LAN).status_code == 200
        assert client.post("/v1/vision/custom/list", headers=LAN).status_code == 200  # Blue Iris lists models
        for method, path in (("GET", "/v1/cameras"), ("POST", "/v1/settings/ObjectDetectionEdgewatch"),
                             ("GET", "/v1/log/list"), ("GET", "/metrics"), ("POST", "/v1/vision/face/list"),
                             ("POST", "/v1/vision/face/register"), ("POST", "/v1/vision/face/delete"),
                             ("DELETE", "/v1/cameras/yard")):
            r = client.request(method, path, headers=LAN)
            assert r.status_code == 403, (path, r.text)
            body = r.json()
            assert body["success"] is False and "edgewatch keys new NAME --scope admin" in body["error"], body
        assert client.get("/v1/cameras").status_code == 200  # from the box itself
        assert client.post("/v1/vision/face/list").status_code == 200
        version = client.get("/v1/status/version", headers=LAN).json()
        assert version["access"] == {"detect": "open", "admin": "trusted only",
                                     "trusted_networks": ["127.0.0.0/8", "::1/128"]}


def test_keys_in_a_header_bearer_or_form_field(data_dir: Path, cache_dir: Path, photo_bytes) -> None:
    image = photo_bytes["bus"]
    with client_for(data_dir, cache_dir, keys=KEYS) as client:
        missing = detect(client, image)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["success"] is False and "x-api-key" in missing.json()["error"]
        assert "api_key form field" in missing.json()["error"]
        assert detect(client, image, {"x-api-key": NVR_KEY}).json()["success"] is True
        assert detect(client, image, {"Authorization": f"Bearer {NVR_KEY}"}).json()["success"] is True
        assert detect(client, image, api_key=NVR_KEY).json()["success"] is True  # as DeepStack clients send it
        urlencoded = client.post("/v1/vision/custom/list", data={"api_key": NVR_KEY}, headers=LAN)
        assert urlencoded.status_code == 200
        wrong = detect(client, image, {"x-api-key": "not-a-key-of-this-box"})
        assert wrong.status_code == 403 and "not one of this box's keys" in wrong.json()["error"]
        assert detect(client, image, api_key="not-a-key").status_code == 403

        cameras = client.get("/v1/cameras", headers={**LAN, "x-api-key": NVR_KEY})
        assert cameras.status_code == 403 and "scope detect" in cameras.json()["error"]
        assert client.get("/v1/cameras", headers={**LAN, "x-api-key": ADMIN_KEY}).status_code == 200
        assert client.get("/metrics", headers={**LAN, "Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        register = client.post("/v1/vision/face/register", headers=LAN,
                               data={"userid": "ann", "admin_key": ADMIN_KEY}, files={"image": photo_bytes["astronaut"]})
        assert register.status_code not in (401, 403), register.text  # past the guard (face models may be missing)
        assert client.get("/v1/status/ping", headers=LAN).status_code == 200  # liveness stays public
        assert client.get("/schema/openapi.json", headers=LAN).status_code == 200
        assert client.get("/v1/status/version", headers=LAN).status_code == 401
        assert client.get("/v1/status/version").json()["access"]["admin"] == "key"

        log = client.get("/v1/log/list", params={"count": 1000}).text
        for secret in (NVR_KEY, ADMIN_KEY, "not-a-key-of-this-box"):
            assert secret not in log
        assert "401 on POST /v1/vision/detection" in log  # the refusals are in the log, the keys are not


def test_openapi_names_the_key_schemes(data_dir: Path, cache_dir: Path) -> None:
    with client_for(data_dir, cache_dir) as client:
        schemes = client.get("/schema/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"]["name"] == "x-api-key" and schemes["BearerAuth"]["scheme"] == "bearer"


def test_keys_new_prints_a_key_once_and_the_config_lines(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["keys", "new", "blue-iris", "--scope", "admin"])
    assert out.exit_code == 0, out.output
    key = re.search(r"^  (\S{43})$", out.output, re.M).group(1)
    config = tmp_path / "config.yaml"
    config.write_text(out.output[out.output.index("access:"):])
    settings = load_settings(config)
    assert settings.access.keys["blue-iris"].scope == "admin"
    assert decide(settings.access, "admin", "192.168.1.20", key).caller == "blue-iris"
    assert CliRunner().invoke(main, ["keys", "new", "bad name"]).exit_code != 0


@pytest.mark.slow
def test_start_log_and_status_say_what_needs_a_key(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"access:\n  keys:\n    nvr: {{hash: '{hash_key(NVR_KEY)}', scope: detect}}\n")
    daemon = DaemonProcess(data_dir, cache_dir, env={"EDGEWATCH_CONFIG": str(config)})
    daemon.start()
    try:
        status = CliRunner().invoke(main, ["status", "--url", daemon.url])
        assert "access: inference endpoints need a key; settings, cameras, faces management answer only trusted " \
               "clients (no admin key)" in status.output, status.output
        refused = httpx.post(daemon.url + "/v1/vision/detection", files={"image": b"x"}, timeout=10)
        assert refused.status_code != 401  # from 127.0.0.1: trusted
    finally:
        out = daemon.stop()
    assert "access: inference endpoints need a key; settings, cameras, faces management answer only trusted " \
           "clients (no admin key)" in out
    assert NVR_KEY not in out and hash_key(NVR_KEY) not in out
