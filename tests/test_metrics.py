"""GET /metrics: Prometheus text that counts what was really sent, one registry per app."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.inference_queue import InferenceQueue
from edgewatch.daemon.metrics import UNMATCHED, Metrics
from edgewatch.daemon.modules.detection import MODULE_ID

DETECT = "/v1/vision/detection"


def make_client(data_dir: Path, cache_dir: Path, **overrides) -> TestClient:
    return TestClient(create_app(load_settings(data_dir=data_dir, cache_dir=cache_dir, **overrides)))


def scrape(client: TestClient) -> dict[str, list]:
    """Each sample's (labels, value), by sample name."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(found: dict[str, list], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for have, v in found.get(name, []) if labels.items() <= have.items())


def requests(found: dict[str, list], **labels: str) -> float:
    return value(found, "edgewatch_http_requests_total", **labels)


def test_metrics_count_what_was_sent(data_dir: Path, cache_dir: Path, photo_bytes: dict[str, bytes]) -> None:
    with make_client(data_dir, cache_dir) as client:
        for _ in range(2):
            assert client.post(DETECT, files={"image": ("bus.jpg", photo_bytes["bus"], "image/jpeg")}).status_code == 200
        assert client.post(DETECT, files={"image": ("x.jpg", b"not an image", "image/jpeg")}).status_code == 400
        assert client.post("/v1/vision/custom/centernet", files={"image": photo_bytes["coffee"]}).status_code == 200
        assert client.get("/v1/no/such/route").status_code == 404
        assert client.get("/v1/status/ping").status_code == 200
        found = scrape(client)

    detection = {"route": DETECT, "method": "POST", "module": MODULE_ID}
    assert requests(found, status="200", **detection) == 2
    assert requests(found, status="400", **detection) == 1
    # the route's template, not its path: one series whatever model is asked for
    assert requests(found, route="/v1/vision/custom/{model_name}", status="200", module=MODULE_ID) == 1
    assert not any("centernet" in labels["route"] for labels, _ in found["edgewatch_http_requests_total"])
    assert requests(found, route=UNMATCHED, method="GET", status="404", module="") == 1
    assert requests(found, route="/v1/status/ping", status="200", module="") == 1
    assert requests(found) == 6  # the scrape itself is counted once it has answered

    # end-to-end latency: one observation per request that reached a route, by module
    assert value(found, "edgewatch_http_request_duration_seconds_count", module=MODULE_ID) == 4
    assert value(found, "edgewatch_http_request_duration_seconds_count", module="") == 1
    buckets = [labels["le"] for labels, _ in found["edgewatch_http_request_duration_seconds_bucket"]
               if labels["module"] == MODULE_ID]
    assert buckets[0] == "0.005" and "10.0" in buckets and buckets[-1] == "+Inf"
    # inference: the backend's time of each detection that ran, by model as asked
    assert value(found, "edgewatch_inference_seconds_count", module=MODULE_ID, model="default") == 2
    assert value(found, "edgewatch_inference_seconds_count", module=MODULE_ID, model="centernet") == 1
    assert value(found, "edgewatch_inference_seconds_sum", module=MODULE_ID) > 0

    # the queue, read at scrape time: nothing waits now
    assert value(found, "edgewatch_inference_queue_depth") == 0
    assert value(found, "edgewatch_inference_workers_busy") == 0
    assert value(found, "edgewatch_inference_workers") >= 1
    assert value(found, "edgewatch_inference_queue_capacity") >= value(found, "edgewatch_inference_workers")
    assert value(found, "edgewatch_inference_queue_full_total") == 0
    # the process
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "process_cpu_seconds_total") > 0
    assert value(found, "process_open_fds") > 0
    assert value(found, "edgewatch_process_threads") >= 1
    assert "edgewatch_mqtt_connected" not in found  # no broker configured
    assert "edgewatch_camera_connected" in found and not found["edgewatch_camera_connected"]  # no cameras


def test_scrapes_count_each_other(data_dir: Path, cache_dir: Path) -> None:
    with make_client(data_dir, cache_dir) as client:
        scrape(client)
        scrape(client)
        found = scrape(client)
    assert requests(found, route="/metrics", method="GET", status="200") == 2


def test_two_apps_do_not_share_counts(data_dir: Path, cache_dir: Path) -> None:
    with make_client(data_dir, cache_dir) as first, make_client(data_dir, cache_dir) as second:
        for _ in range(3):
            first.get("/v1/status/ping")
        second.get("/v1/status/ping")
        assert requests(scrape(first), route="/v1/status/ping") == 3
        assert requests(scrape(second), route="/v1/status/ping") == 1
    with make_client(data_dir, cache_dir) as third:  # a new app starts from nothing
        assert requests(scrape(third)) == 0


def test_a_full_queue_is_counted(data_dir: Path, cache_dir: Path, photo_bytes: dict[str, bytes]) -> None:
    started, release = threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        release.wait(30)

    with make_client(data_dir, cache_dir, inference={"workers": 1, "queue_size": 1}) as client:
        queue = client.app.state.services.queue
        running = client.blocking_portal.start_task_soon(queue.run, blocker)
        try:
            assert started.wait(30)
            busy = scrape(client)
            refused = client.post(DETECT, files={"image": photo_bytes["bus"]})
            assert refused.status_code == 503 and "Retry-After" in refused.headers
        finally:
            release.set()
            running.result(30)
        found = scrape(client)
    assert value(busy, "edgewatch_inference_queue_depth") == 1
    assert value(busy, "edgewatch_inference_workers_busy") == 1
    assert value(found, "edgewatch_inference_queue_full_total") == 1
    assert requests(found, route=DETECT, status="503", module=MODULE_ID) == 1
    assert value(found, "edgewatch_inference_seconds_count") == 0  # nothing was detected


class _Cameras:
    def states(self) -> dict[str, dict]:
        return {"porch": {"connected": True, "frames_seen": 120, "detections": 7, "skipped_busy": 3, "reconnects": 1,
                          "motion_skipped": 110, "objects": {"person": 5, "car": 2}},
                "garage": {"connected": False}}  # not running: no counts yet


def test_cameras_mqtt_and_the_disk_are_read_at_scrape_time(tmp_path: Path) -> None:
    mqtt = SimpleNamespace(state=lambda: SimpleNamespace(connected=True))
    services = SimpleNamespace(queue=InferenceQueue(1, 1), cameras=_Cameras(), mqtt=mqtt,
                               config=SimpleNamespace(data_dir=tmp_path))
    found = samples(Metrics(services).scrape().decode())  # type: ignore[arg-type]
    assert value(found, "edgewatch_camera_connected", camera="porch") == 1
    assert value(found, "edgewatch_camera_connected", camera="garage") == 0
    assert value(found, "edgewatch_camera_frames_total", camera="porch") == 120
    assert value(found, "edgewatch_camera_detections_total", camera="porch") == 7
    assert value(found, "edgewatch_camera_skipped_busy_total", camera="porch") == 3
    assert value(found, "edgewatch_camera_reconnects_total", camera="porch") == 1
    assert value(found, "edgewatch_camera_motion_skipped_total", camera="porch") == 110
    assert value(found, "edgewatch_camera_objects_total", camera="porch", label="person") == 5
    assert value(found, "edgewatch_camera_objects_total", camera="porch", label="car") == 2
    assert not [s for s in found["edgewatch_camera_objects_total"] if s[0]["camera"] == "garage"]
    assert not [s for s in found["edgewatch_camera_frames_total"] if s[0]["camera"] == "garage"]
    assert value(found, "edgewatch_mqtt_connected") == 1
    assert value(found, "edgewatch_data_disk_size_bytes") == shutil.disk_usage(tmp_path).total
    assert 0 < value(found, "edgewatch_data_disk_free_bytes") <= shutil.disk_usage(tmp_path).total
    services.mqtt = SimpleNamespace(state=lambda: SimpleNamespace(connected=False))
    assert value(samples(Metrics(services).scrape().decode()), "edgewatch_mqtt_connected") == 0  # type: ignore[arg-type]


def test_metrics_is_not_in_the_schema(data_dir: Path, cache_dir: Path) -> None:
    with make_client(data_dir, cache_dir) as client:
        assert "/metrics" not in client.get("/schema/openapi.json").json()["paths"]


def test_detections_count_labels_and_time_around_the_inference(data_dir: Path, cache_dir: Path,
                                                               photo_bytes: dict[str, bytes]) -> None:
    """One detection: the per-label counters move as its answer's predictions say, and its time
    splits into inference and pre/post (together the answer's processMs), both by backend."""
    from collections import Counter

    with make_client(data_dir, cache_dir) as client:
        answer = client.post(DETECT, files={"image": ("bus.jpg", photo_bytes["bus"], "image/jpeg")}).json()
        found = scrape(client)
    labels = Counter(p["label"] for p in answer["predictions"])
    assert {"bus", "person"} <= set(labels)
    for label, count in labels.items():
        assert value(found, "edgewatch_predictions_total", module=MODULE_ID, label=label) == count
    assert value(found, "edgewatch_predictions_total") == answer["count"]
    inference = [labels for labels, v in found["edgewatch_inference_seconds_count"] if v]
    pre_post = [labels for labels, v in found["edgewatch_pre_post_seconds_count"] if v]
    assert len(inference) == len(pre_post) == 1 and inference == pre_post  # one series each, the same labels
    assert inference[0]["backend"] == "onnxruntime" and inference[0]["model"] == "default"
    spent = value(found, "edgewatch_inference_seconds_sum") + value(found, "edgewatch_pre_post_seconds_sum")
    assert value(found, "edgewatch_pre_post_seconds_sum") > 0  # decoding a JPEG takes time
    assert abs(spent * 1000 - answer["processMs"]) <= 1.0  # processMs is rounded to the millisecond


def test_the_cpu_temperature_is_read_at_scrape_time(monkeypatch, tmp_path: Path) -> None:
    import edgewatch.daemon.metrics as metrics

    services = SimpleNamespace(queue=InferenceQueue(1, 1), cameras=None, mqtt=None,
                               config=SimpleNamespace(data_dir=tmp_path))
    monkeypatch.setattr(metrics, "cpu_temperature", lambda: 47.5)
    assert value(samples(Metrics(services).scrape().decode()), "edgewatch_cpu_temperature_celsius") == 47.5  # type: ignore[arg-type]
    monkeypatch.setattr(metrics, "cpu_temperature", lambda: None)  # no thermal zone: no series
    assert "edgewatch_cpu_temperature_celsius" not in samples(Metrics(services).scrape().decode())  # type: ignore[arg-type]
