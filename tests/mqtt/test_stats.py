"""The box's key figures on the retained ``edgewatch/<node_id>/stats`` topic (real mosquitto, real
daemon, a real camera on a looping video), their Home Assistant sensors, the MQTT counters of
/metrics, and the CPU temperature read from a fake /sys/class/thermal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import jinja2
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from media import write_video
from mqtt_harness import Client, send_job, start_daemon, until

from edgewatch.daemon.mqtt.discovery import STATS_CAMERA_SENSORS, STATS_SENSORS, stats_entities
from edgewatch.daemon.host_readings import cpu_temperature

NODE = "stats-box"
STATS = f"edgewatch/{NODE}/stats"
CONFIGS = f"homeassistant/sensor/{NODE}/+/config"
FIELDS = {"node_id", "interval_s", "inference_ms", "inferences", "requests", "requests_per_s", "errors",
          "server_errors", "queue_full", "mqtt_jobs", "queue_depth", "queue_capacity", "workers_busy", "rss_mb",
          "cpu_percent", "open_fds", "threads", "uptime_s", "cpu_temp_c", "cameras", "timestamp", "time"}
CAMERA_FIELDS = {"connected", "fps_in", "fps_out", "detections_per_s", "motion_gated_pct"}


def _stats_configs(messages) -> dict[str, bytes]:
    """The latest payload of each stats sensor's discovery topic."""
    return {m.topic: m.payload for m in messages
            if m.topic.startswith(f"homeassistant/sensor/{NODE}/") and "stats_" in m.topic}


def _metrics(url: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(v for have, v in found.get(name, []) if labels.items() <= have.items())


def test_stats_topic_sensors_and_mqtt_counters(broker, client: Client, data_dir: Path, cache_dir: Path,
                                               tmp_path: Path, photos, photo_bytes) -> None:
    clip = write_video(tmp_path / "yard.avi", photos, ("bus",), (640, 360), 10)  # a still street, looped
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"cameras": [{"name": "yard", "url": str(clip), "fps": 5}]}))
    client.subscribe(STATS)
    client.subscribe(CONFIGS)
    client.subscribe("test/stats/#")
    daemon = start_daemon(data_dir, cache_dir, broker.port, NODE, client, EDGEWATCH_CONFIG=str(config),
                          EDGEWATCH_MQTT_STATS_INTERVAL_S="1")
    try:
        for i in range(3):
            send_job(client, photo_bytes["bus"], f"test/stats/{i}")
        send_job(client, b"not an image", "test/stats/bad")
        for topic in ("test/stats/0", "test/stats/1", "test/stats/2", "test/stats/bad"):
            client.wait_seen(lambda m, topic=topic: m.topic == topic)
        answer = httpx.post(f"{daemon.url}/v1/vision/detection", files={"image": photo_bytes["bus"]}, timeout=30)
        assert answer.status_code == 200

        def stats(history) -> list[dict]:
            return [json.loads(m.payload) for m in history if m.topic == STATS]

        # every job answered is in exactly one interval: the intervals' counts add up to the 4 jobs
        found = client.wait_history(lambda h: (s := stats(h)) and sum(x["mqtt_jobs"] for x in s) >= 4
                                    and sum(x["inferences"] for x in s) >= 4  # the 3 good jobs + REST
                                    and any((x["cameras"].get("yard") or {}).get("fps_in") for x in s) and s,
                                    timeout=20)
        assert sum(x["mqtt_jobs"] for x in found) == 4
        for x in found:
            assert set(x) == FIELDS, set(x) ^ FIELDS
            assert x["node_id"] == NODE and 0.5 <= x["interval_s"] <= 10
            assert 20 < x["rss_mb"] < 20_000 and 0 <= x["cpu_percent"] <= 100 * 64
            assert x["open_fds"] > 3 and x["threads"] >= 2 and 0 <= x["uptime_s"] < 600
            assert x["queue_capacity"] == 16 and 0 <= x["queue_depth"] <= 16 and 0 <= x["workers_busy"] <= 2
            assert x["errors"] >= x["server_errors"] >= x["queue_full"] == 0
            assert x["requests_per_s"] == pytest.approx(x["requests"] / x["interval_s"], rel=0.1, abs=0.1)
            # this machine's own /sys/class/thermal: None where it has no zone
            assert (x["cpu_temp_c"] is None) == (cpu_temperature() is None)
            assert x["cpu_temp_c"] is None or -40 < x["cpu_temp_c"] < 150
            assert (x["inference_ms"] is None) == (x["inferences"] == 0)
            if x["inference_ms"] is not None:
                assert 0 < x["inference_ms"] < 10_000
            for camera in x["cameras"].values():
                assert set(camera) == CAMERA_FIELDS
                pct = camera["motion_gated_pct"]
                assert pct is None or 0 <= pct <= 100
        assert sum(x["requests"] for x in found) >= 1  # the REST detection (and the start-up pings)
        yard = [x["cameras"]["yard"] for x in found if "yard" in x["cameras"]]
        assert any(c["connected"] and c["fps_in"] > 0 and c["fps_out"] > 0 for c in yard)

        # retained: a client subscribing later gets the latest figures at once
        late = Client(broker.port, "late-dashboard")
        try:
            late.subscribe(STATS)
            retained = late.wait_for(lambda m: m.topic == STATS)
            assert retained.retain and set(json.loads(retained.payload)) == FIELDS
        finally:
            late.close()

        # Home Assistant: one sensor per figure, each template naming a field the payload has
        latest = stats(client.history)[-1]
        temperature = cpu_temperature() is not None
        expected = {f"homeassistant/sensor/{NODE}/stats_{key}/config" for key in STATS_SENSORS
                    if key != "cpu_temp_c" or temperature}
        expected |= {f"homeassistant/sensor/{NODE}/stats_yard_{key}/config" for key in STATS_CAMERA_SENSORS}
        published = client.wait_history(lambda h: (c := _stats_configs(h)) and expected <= set(c) and c)
        configs = {topic: payload for topic, payload in published.items() if payload}
        assert set(configs) == expected
        if not temperature:  # no thermal zone here: no temperature sensor (its config emptied)
            assert published[f"homeassistant/sensor/{NODE}/stats_cpu_temp_c/config"] == b""
        for topic, payload in configs.items():
            entity = json.loads(payload)
            assert entity["state_topic"] == STATS and entity["entity_category"] == "diagnostic"
            assert entity["availability_topic"] == f"edgewatch/{NODE}/availability"
            assert entity["unique_id"].startswith(f"edgewatch_{NODE}_stats_")
            assert entity["device"]["identifiers"] == [f"edgewatch_{NODE}"]  # the box's own device
            camera = re.search(r"value_json\.cameras\['([^']+)'\]\.(\w+)", entity["value_template"])
            if camera:
                assert camera[1] == "yard" and entity["name"].startswith("yard ")
                value = latest["cameras"][camera[1]][camera[2]]
            else:
                key = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", entity["value_template"])[1]
                assert key in latest
                value = latest[key]
            # the template as Home Assistant renders it (Jinja2 with value_json): the payload's figure
            assert jinja2.Template(entity["value_template"]).render(value_json=latest) == str(value)
        units = {key: json.loads(configs[f"homeassistant/sensor/{NODE}/stats_{key}/config"])
                 for key in ("inference_ms", "rss_mb", "uptime_s")}
        assert units["inference_ms"]["unit_of_measurement"] == "ms"
        assert units["inference_ms"]["device_class"] == "duration"
        assert units["inference_ms"]["state_class"] == "measurement"
        assert (units["rss_mb"]["unit_of_measurement"], units["rss_mb"]["device_class"]) == ("MB", "data_size")
        assert units["uptime_s"]["device_class"] == "duration"
        if temperature:
            temp = json.loads(configs[f"homeassistant/sensor/{NODE}/stats_cpu_temp_c/config"])
            assert (temp["unit_of_measurement"], temp["device_class"]) == ("°C", "temperature")

        # /metrics: the MQTT and camera counters moved with the work done (the camera's for a few seconds:
        # frames detected, then still ones the motion gate let pass)
        found_metrics = until(lambda: (m := _metrics(daemon.url))
                              and _value(m, "edgewatch_camera_motion_skipped_total", camera="yard") >= 1
                              and _value(m, "edgewatch_camera_objects_total", camera="yard") >= 1 and m,
                              timeout=20, what="the camera's frames gated and objects counted in /metrics")
        assert _value(found_metrics, "edgewatch_mqtt_job_replies_total", status="200") == 3
        assert _value(found_metrics, "edgewatch_mqtt_job_replies_total", status="400") == 1
        assert _value(found_metrics, "edgewatch_mqtt_published_total") >= 4 + len(configs)
        assert _value(found_metrics, "edgewatch_mqtt_connected") == 1
        frames = _value(found_metrics, "edgewatch_camera_frames_total", camera="yard")
        done = sum(_value(found_metrics, f"edgewatch_camera_{what}_total", camera="yard")
                   for what in ("detections", "motion_skipped", "skipped_busy"))
        assert frames > 0 and done <= frames <= done + 1  # each frame detected, gated or skipped (one may be in work)
        objects = {labels["label"]: v for labels, v in found_metrics["edgewatch_camera_objects_total"]
                   if labels["camera"] == "yard"}
        assert objects.get("bus", 0) + objects.get("person", 0) > 0
        # the camera's detections are timed with the REST and MQTT ones: one series, by backend too
        timed = [labels for labels, v in found_metrics["edgewatch_inference_seconds_count"] if v]
        assert [(t["model"], bool(t["backend"])) for t in timed] == [("default", True)]
        assert _value(found_metrics, "edgewatch_pre_post_seconds_count") == \
            _value(found_metrics, "edgewatch_inference_seconds_count")
    finally:
        daemon.stop()

    # stats off: the box empties the sensors' configs (Home Assistant deletes them) and the figures
    client.subscribe(f"edgewatch/{NODE}/availability")
    daemon = start_daemon(data_dir, cache_dir, broker.port, NODE, client, EDGEWATCH_CONFIG=str(config),
                          EDGEWATCH_MQTT_STATS_INTERVAL_S="0")
    try:
        client.wait_history(lambda h: all(_stats_configs(h).get(t) == b"" for t in expected)
                            and [m for m in h if m.topic == STATS][-1].payload == b"")
        fresh = Client(broker.port, "fresh-ha")
        try:
            fresh.subscribe(CONFIGS)
            fresh.subscribe(STATS)
            fresh.sync()  # every retained message there is has arrived
            assert not _stats_configs(fresh.history) and not [m for m in fresh.history if m.topic == STATS]
            assert [m for m in fresh.history if m.topic.endswith("/inference_ms/config")]  # the others stay
        finally:
            fresh.close()
    finally:
        daemon.stop()


def _zone(root: Path, n: int, kind: str | None, temp: str | None) -> Path:
    zone = root / f"thermal_zone{n}"
    zone.mkdir(parents=True)
    if kind is not None:
        (zone / "type").write_text(kind + "\n")
    if temp is not None:
        (zone / "temp").write_text(temp + "\n")
    return zone


def test_cpu_temperature_from_a_fake_sys_tree(tmp_path: Path) -> None:
    board = tmp_path / "board"  # a cpu zone is taken over a hotter non-cpu one
    _zone(board, 0, "acpitz", "45000")
    _zone(board, 1, "x86_pkg_temp", "62500")
    _zone(board, 2, "gpu-thermal", "70000")
    (board / "cooling_device0").mkdir()  # not a zone
    assert cpu_temperature(board) == 62.5

    soc = tmp_path / "soc"  # two processor zones (RK3588's): the hottest
    _zone(soc, 0, "soc-thermal", "51230")
    _zone(soc, 1, "bigcore0-thermal", "49000")
    _zone(soc, 2, "cpu_thermal", "53840")
    assert cpu_temperature(soc) == 53.8

    other = tmp_path / "other"  # no zone names the processor: the hottest of all
    _zone(other, 0, "acpitz", "40000")
    _zone(other, 1, "gpu", "51000")
    _zone(other, 2, None, "30000")  # no type file
    assert cpu_temperature(other) == 51.0

    assert cpu_temperature(tmp_path / "absent") is None  # no /sys/class/thermal at all
    (tmp_path / "empty").mkdir()
    assert cpu_temperature(tmp_path / "empty") is None  # a thermal class with no zone

    bad = tmp_path / "unreadable"
    _zone(bad, 0, "cpu-thermal", "not a number")
    _zone(bad, 1, "cpu-thermal", None).joinpath("temp").mkdir()  # reading it fails (EISDIR)
    _zone(bad, 2, "cpu-thermal", "-273000")  # a disabled sensor's sentinel
    _zone(bad, 3, "soc-thermal", "")
    assert cpu_temperature(bad) is None
    _zone(bad, 4, "acpitz", "38000")  # one readable zone among the bad ones is the answer
    assert cpu_temperature(bad) == 38.0


def test_no_thermal_zone_means_no_temperature_sensor() -> None:
    with_zone = stats_entities("b", "edgewatch/b", "homeassistant")
    without = stats_entities("b", "edgewatch/b", "homeassistant", temperature=False)
    assert set(with_zone) - set(without) == {"homeassistant/sensor/b/stats_cpu_temp_c/config"}
