"""MQTT against a real mosquitto: jobs answered like the REST API, availability with last will,
Home Assistant discovery, broker restarts, and work shared between two daemons."""

from __future__ import annotations

import json
import signal


import httpx

from mqtt_harness import Broker, Client, send_job, start_daemon, until


def test_jobs_answered_with_the_rest_envelope_and_errors(broker, client, data_dir, cache_dir, photo_bytes) -> None:
    client.subscribe("test/replies/#")
    daemon = start_daemon(data_dir, cache_dir, broker.port, "box-a", client)
    try:
        corr = send_job(client, photo_bytes["bus"], "test/replies/1", min_confidence="0.5")
        msg = client.wait_for(lambda m: m.topic == "test/replies/1")
        assert msg.properties.CorrelationData == corr
        assert ("processedBy", "box-a") in msg.properties.UserProperty
        body = json.loads(msg.payload)
        assert body["success"] and body["moduleId"] == "ObjectDetectionEdgewatch" and body["command"] == "detect"
        assert {"bus", "person"} <= {p["label"] for p in body["predictions"]}
        assert all(p["confidence"] >= 0.5 for p in body["predictions"])
        send_job(client, b"not an image", "test/replies/2")
        bad = json.loads(client.wait_for(lambda m: m.topic == "test/replies/2").payload)
        assert bad["success"] is False and bad["code"] == 400 and "not an image" in bad["error"] and bad["predictions"] == []
        send_job(client, photo_bytes["bus"], "test/replies/3", min_confidence="lots")
        bad = json.loads(client.wait_for(lambda m: m.topic == "test/replies/3").payload)
        assert bad["success"] is False and "min_confidence" in bad["error"]
        send_job(client, photo_bytes["bus"], "test/replies/4", model="../etc")
        bad = json.loads(client.wait_for(lambda m: m.topic == "test/replies/4").payload)
        assert bad["success"] is False and "invalid model name" in bad["error"]
        client.subscribe("edgewatch/box-a/jobs/errors")
        client.c.publish("edgewatch/jobs/detection", photo_bytes["bus"], qos=1)  # no response topic
        err = json.loads(client.wait_for(lambda m: m.topic == "edgewatch/box-a/jobs/errors").payload)
        assert err["success"] is False and "response topic" in err["error"]
    finally:
        daemon.stop()


def test_online_only_once_the_broker_acknowledged_the_jobs_subscription(tmp_path, data_dir, cache_dir,
                                                                        photo_bytes) -> None:
    """A client that sees `online` can send a job at once: the box says online only after the SUBACK
    of its job subscription (read in the broker's own packet log), and the job is answered."""
    broker = Broker(tmp_path, verbose=True)
    broker.start()
    client = Client(broker.port, "asker")
    daemon = None
    try:
        client.subscribe("test/online/#")
        daemon = start_daemon(data_dir, cache_dir, broker.port, "box-o", client)
        corr = send_job(client, photo_bytes["bus"], "test/online/1")  # the moment it is online
        msg = client.wait_for(lambda m: m.topic == "test/online/1")
        assert msg.properties.CorrelationData == corr and json.loads(msg.payload)["success"]
    finally:
        if daemon is not None:
            daemon.stop()
        client.close()
        broker.stop()
    log = broker.log().splitlines()

    def first(*parts: str) -> int:
        return next((i for i, line in enumerate(log) if all(p in line for p in parts)), len(log))

    subscribed = first("edgewatch-box-o 1 $share/edgewatch/edgewatch/jobs/detection")
    suback = next(i for i in range(subscribed, len(log)) if "Sending SUBACK to edgewatch-box-o" in log[i])
    online = first("Received PUBLISH from edgewatch-box-o", "'edgewatch/box-o/availability'")
    assert subscribed < suback < online < len(log), "availability went online before the jobs subscription's SUBACK"


def test_availability_last_will_and_discovery(broker, client, data_dir, cache_dir) -> None:
    daemon = start_daemon(data_dir, cache_dir, broker.port, "box-b")
    client.subscribe("edgewatch/box-b/availability")
    client.wait_for(lambda m: m.payload == b"online")
    client.subscribe("homeassistant/sensor/box-b/+/config")
    configs = {}
    while len(configs) < 2:
        m = client.wait_for(lambda m: m.topic.startswith("homeassistant/sensor/box-b/"))
        configs[m.topic] = json.loads(m.payload)
    speed = configs["homeassistant/sensor/box-b/inference_ms/config"]
    assert speed["unique_id"] == "edgewatch_box-b_inference_ms" and speed["unit_of_measurement"] == "ms"
    assert speed["availability_topic"] == "edgewatch/box-b/availability"
    assert speed["device"]["identifiers"] == ["edgewatch_box-b"] and speed["state_topic"] == "edgewatch/box-b/status"
    client.c.publish("homeassistant/status", "online", qos=1)  # Home Assistant restarted: discovery again
    client.wait_for(lambda m: m.topic == "homeassistant/sensor/box-b/backend/config" and not m.retain)
    daemon.proc.send_signal(signal.SIGKILL)  # no clean DISCONNECT: the broker sends the last will
    daemon.proc.wait()
    client.wait_for(lambda m: m.topic == "edgewatch/box-b/availability" and m.payload == b"offline", timeout=60)
    daemon.start()
    client.wait_for(lambda m: m.topic == "edgewatch/box-b/availability" and m.payload == b"online")
    daemon.stop()  # a clean stop says offline too
    client.wait_for(lambda m: m.topic == "edgewatch/box-b/availability" and m.payload == b"offline")


def test_broker_restart_reconnects_and_republishes(broker, data_dir, cache_dir) -> None:
    first = Client(broker.port, "first-watcher")
    daemon = start_daemon(data_dir, cache_dir, broker.port, "box-c", first)
    first.close()
    try:
        broker.stop()  # persistence is off: every retained message is gone with it
        until(lambda: not httpx.get(f"{daemon.url}/v1/status/mqtt", timeout=5).json()["mqtt"]["connected"],
              what="the daemon noticing the broker is gone")
        broker.start()
        watcher = Client(broker.port, "watcher")
        try:
            watcher.subscribe("homeassistant/sensor/box-c/+/config")
            watcher.subscribe("edgewatch/box-c/availability")
            watcher.wait_seen(lambda m: m.topic == "edgewatch/box-c/availability" and m.payload == b"online",
                              timeout=60)
            # discovery goes out before availability (that waits for the SUBACK): already here, or on its way
            watcher.wait_seen(lambda m: m.topic.endswith("/inference_ms/config"), timeout=30)
        finally:
            watcher.close()
    finally:
        daemon.stop()


def test_two_boxes_share_the_jobs_through_the_broker(broker, client, data_dir, cache_dir, tmp_path, photo_bytes) -> None:
    import shutil

    second = tmp_path / "second"
    shutil.copytree(data_dir, second)
    client.subscribe("test/shared/#")
    a = start_daemon(data_dir, cache_dir, broker.port, "box-x", client)
    b = None
    try:
        b = start_daemon(second, cache_dir, broker.port, "box-y", client)
        for i in range(12):
            send_job(client, photo_bytes["chelsea"], f"test/shared/{i}")
        seen: dict[str, int] = {}
        for _ in range(12):
            m = client.wait_for(lambda m: m.topic.startswith("test/shared/"), timeout=60)
            assert json.loads(m.payload)["success"]
            node = dict(m.properties.UserProperty)["processedBy"]
            seen[node] = seen.get(node, 0) + 1
        assert set(seen) == {"box-x", "box-y"} and sum(seen.values()) == 12  # each job answered once, both worked
    finally:
        a.stop()
        if b is not None:
            b.stop()
