"""What an MQTT client can make the box do, against a real mosquitto and a real daemon: answers
go only to the client's own topics, oversized jobs are refused before they are read, and no
secret (a camera password, the broker password) is ever published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mqtt_harness import Broker, Client, send_job, start_daemon

from edgewatch.daemon.mqtt.link import response_topic_problem


def answer(client: Client, corr: bytes, timeout: float = 30) -> tuple[str, dict]:
    """The daemon's answer to the job with correlation data ``corr``: (topic, envelope). (A client
    subscribed to '#' also sees its own job: the answer is the message a box says it processed.)"""
    m = client.wait_seen(lambda m: getattr(m.properties, "CorrelationData", None) == corr
                         and "processedBy" in dict(getattr(m.properties, "UserProperty", None) or []), timeout)
    return m.topic, json.loads(m.payload)


# -- 1. response topics ----------------------------------------------------------------------------

FORBIDDEN = [
    "homeassistant/sensor/x/backend/config",  # a forged Home Assistant discovery config
    "homeassistant/status",
    "homeassistant",
    "edgewatch/guard/availability",           # this box's own topics
    "edgewatch/other-box/status",             # another box's
    "edgewatch/jobs/detection",               # the jobs topic itself: a loop between boxes
    "$SYS/broker/x",
    "test/+/reply",
    "test/#",
]  # mosquitto itself drops a client that sends control characters in a topic: see test_a_refused_topic_is_shown_escaped


def test_a_job_cannot_make_the_box_publish_on_reserved_topics(broker, client, data_dir, cache_dir,
                                                              photo_bytes) -> None:
    client.subscribe("#")  # everything the daemon publishes, anywhere
    daemon = start_daemon(data_dir, cache_dir, broker.port, "guard", client)
    try:
        refused = {}
        for topic in FORBIDDEN:
            refused[send_job(client, photo_bytes["bus"], topic)] = topic
        for corr, topic in refused.items():
            where, body = answer(client, corr)
            assert where == "edgewatch/guard/jobs/errors", f"the job asking for {topic!r} was answered on {where!r}"
            assert body["success"] is False and body["code"] == 400 and body["predictions"] == []
            assert "refused" in body["error"] and "mqtt.response_topic_prefix" in body["error"]
            assert "not under edgewatch/, homeassistant/" in body["error"]  # says which topics are not allowed
        # the box still answers on a topic of the client's own
        corr = send_job(client, photo_bytes["bus"], "test/replies/ok")
        where, body = answer(client, corr)
        assert where == "test/replies/ok" and body["success"] is True
        client.sync()  # everything the broker had for us has arrived
    finally:
        log = daemon.stop()
    envelopes = [m for m in client.history if m.payload.startswith(b"{") and b'"moduleId"' in m.payload]
    assert {m.topic for m in envelopes} == {"edgewatch/guard/jobs/errors", "test/replies/ok"}
    assert not [m for m in client.history if m.topic.startswith("homeassistant/sensor/x/")]
    assert "response topic 'homeassistant/sensor/x/backend/config' refused" in log  # and the log says so


def test_response_topic_prefix_is_an_allow_list(broker, client, data_dir, cache_dir, photo_bytes) -> None:
    client.subscribe("replies/#")
    client.subscribe("edgewatch/allow/jobs/errors")
    daemon = start_daemon(data_dir, cache_dir, broker.port, "allow", client,
                          EDGEWATCH_MQTT_RESPONSE_TOPIC_PREFIX="replies/allowed")
    try:
        ok = send_job(client, photo_bytes["bus"], "replies/allowed/1")
        outside = send_job(client, photo_bytes["bus"], "replies/other/1")
        lookalike = send_job(client, photo_bytes["bus"], "replies/allowed-not/1")  # a prefix is whole levels
        where, body = answer(client, ok)
        assert where == "replies/allowed/1" and body["success"] is True
        for corr in (outside, lookalike):
            where, body = answer(client, corr)
            assert where == "edgewatch/allow/jobs/errors" and body["code"] == 400
            assert "only topics under replies/allowed/ (mqtt.response_topic_prefix)" in body["error"]
    finally:
        daemon.stop()


@pytest.mark.parametrize("topic, why", [
    ("", "empty"),
    ("a\x00b", "NUL"),
    ("a/" + "b" * 65535, "longer than 65535 bytes"),
    ("a/+/b", "wildcard"),
    ("a/#", "wildcard"),
    ("$share/g/a", "starts with '$'"),
    ("edgewatch", "under edgewatch/"),
    ("home/box1/x", "under home/box1/"),
    ("homeassistant/status", "under homeassistant/"),
    ("replies-x/1", "not under replies/"),
])
def test_response_topic_rules(topic: str, why: str) -> None:
    """The cases a broker will not carry in a PUBLISH (NUL, over 65535 bytes) are checked here."""
    problem = response_topic_problem(topic, prefix="home/box1", discovery_prefix="homeassistant",
                                     allowed_prefix="replies/")
    assert problem is not None and why in problem and "mqtt.response_topic_prefix" in problem
    assert len(problem) < 1000  # the topic is shown capped, not echoed whole


def test_a_refused_topic_is_shown_escaped() -> None:
    """Client text in an error (and so in the log line) cannot forge lines: control characters escaped."""
    problem = response_topic_problem("homeassistant/x\nforged line", prefix="edgewatch/b",
                                     discovery_prefix="homeassistant", allowed_prefix=None)
    assert problem is not None and "homeassistant/x\\nforged line" in problem and "\n" not in problem
    assert "not under edgewatch/, homeassistant/" in problem and "mqtt.response_topic_prefix" in problem


@pytest.mark.parametrize("topic, allowed_prefix", [
    ("replies/1", "replies/"), ("replies/a/b", "replies"), ("my/app/answers", None),
    ("edgewatchers/1", None),  # edgewatch/ is a topic level, not a string prefix
])
def test_topics_of_the_clients_own_are_allowed(topic: str, allowed_prefix: str | None) -> None:
    assert response_topic_problem(topic, prefix="home/box1", discovery_prefix="homeassistant",
                                  allowed_prefix=allowed_prefix) is None


# -- 2. size limits ----------------------------------------------------------------------------------

MAX_BODY = 300_000     # chelsea.jpg (240 512 bytes) fits, with padding it does not
MAX_PIXELS = 500_000   # chelsea (451x300) fits, bus (810x1080) does not


def test_oversized_jobs_are_refused_before_decoding(broker, client, data_dir, cache_dir, photo_bytes) -> None:
    client.subscribe("test/size/#")
    daemon = start_daemon(data_dir, cache_dir, broker.port, "sized", client,
                          EDGEWATCH_SERVER_MAX_BODY_BYTES=str(MAX_BODY),
                          EDGEWATCH_SERVER_MAX_IMAGE_PIXELS=str(MAX_PIXELS))
    try:
        cat = photo_bytes["chelsea"]
        # a valid JPEG with trailing bytes decodes fine: only the size limit can refuse it
        over = send_job(client, cat + b"\0" * (MAX_BODY + 1 - len(cat)), "test/size/over")
        at = send_job(client, cat + b"\0" * (MAX_BODY - len(cat)), "test/size/at")
        big = send_job(client, photo_bytes["bus"], "test/size/pixels")
        where, body = answer(client, over)
        assert where == "test/size/over" and body["success"] is False and body["code"] == 413
        assert f"{MAX_BODY + 1} bytes" in body["error"] and "server.max_body_bytes" in body["error"]
        assert body["predictions"] == []
        where, body = answer(client, at)
        assert body["success"] is True, body  # the limit itself is allowed, as in REST
        where, body = answer(client, big)
        assert body["success"] is False and body["code"] == 400 and "pixels" in body["error"]
        normal = send_job(client, cat, "test/size/normal")  # and the box carries on as before
        where, body = answer(client, normal)
        assert where == "test/size/normal" and body["success"] is True
        assert "cat" in {p["label"] for p in body["predictions"]}
    finally:
        daemon.stop()


# -- 3. secrets --------------------------------------------------------------------------------------

CAMERA_URL = "rtsp://admin:s3cret@127.0.0.1:1/x"  # nothing listens on port 1: the camera fails, and says so
BROKER_PASSWORD = "broker-s3cret-pw"
API_KEY = "Zq4vJ1c9kT0pL2mN8xW5yR7bH3sD6fG0aE1uI4oP9tY"  # a key as `edgewatch keys new` makes them


def test_no_secret_is_ever_published(tmp_path: Path, data_dir, cache_dir, photo_bytes) -> None:
    broker = Broker(tmp_path, users={"edgewatch": BROKER_PASSWORD, "ha": "ha-password"})
    broker.start()
    config = tmp_path / "edgewatch.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "door", "url": CAMERA_URL, "fps": 5}]}))
    watcher = Client(broker.port, "ha", auth=("ha", "ha-password"))
    daemon = None
    try:
        watcher.subscribe("#")
        daemon = start_daemon(data_dir, cache_dir, broker.port, "secret-box", watcher, EDGEWATCH_CONFIG=str(config),
                              EDGEWATCH_MQTT_USERNAME="edgewatch", EDGEWATCH_MQTT_PASSWORD=BROKER_PASSWORD)
        state = watcher.wait_seen(lambda m: m.topic == "edgewatch/secret-box/door/state"
                                  and json.loads(m.payload).get("last_error"), timeout=40)
        assert json.loads(state.payload)["url"] == "rtsp://admin:***@127.0.0.1:1/x"
        # error answers echo what the client sent; the client may have sent a secret
        jobs = [send_job(watcher, photo_bytes["bus"], "test/secret/1", model="rtsp://admin:s3cret@cam/x"),
                send_job(watcher, photo_bytes["bus"], "test/secret/2", model=BROKER_PASSWORD),
                send_job(watcher, photo_bytes["bus"], "test/secret/3", min_confidence="password=s3cret"),
                send_job(watcher, photo_bytes["bus"], "test/secret/4", model="nosuchmodel", api_key=API_KEY)]
        for corr in jobs[:3]:
            _, body = answer(watcher, corr)
            assert body["success"] is False and "***" in body["error"], body
        _, body = answer(watcher, jobs[3])  # a DeepStack-style api_key sent along is never echoed
        assert body["success"] is False and "nosuchmodel" in body["error"], body
        watcher.sync()  # every message published so far has arrived
    finally:
        if daemon is not None:
            daemon.stop()
        watcher.close()
        broker.stop()
    assert any(m.topic == "homeassistant/sensor/secret-box/door_state/config" for m in watcher.history)
    leaks = [m.topic for m in watcher.history for secret in ("s3cret", API_KEY) if secret.encode() in m.payload
             or secret in m.topic or (m.topic != "edgewatch/jobs/detection" and secret in repr(m.properties))]
    assert not leaks, f"a secret was published on {leaks}"
