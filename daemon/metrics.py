"""Prometheus metrics for ``GET /metrics``: one :class:`Metrics` per app, on its own
``CollectorRegistry`` (never the global one: a process may hold several apps, as the tests do).

What moves as it happens (requests, latency, inference time, queue refusals) is counted when it
happens; what is a state (queue depth, cameras, MQTT, the process) is read when scraped.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edgewatch.daemon import __version__
from edgewatch.daemon.host_readings import cpu_temperature, disk_space, proc_status
from edgewatch.daemon.inference_queue import InferenceQueue

if TYPE_CHECKING:
    from litestar.types import Message, Scope

    from edgewatch.daemon.services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes

# end to end, a request takes from 5 ms (a ping, a small detection) to seconds (background removal, text generation)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

UNMATCHED = "unmatched"  # the route label of a request no route took (404, 405)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_by_queue: weakref.WeakKeyDictionary[InferenceQueue, Metrics] = weakref.WeakKeyDictionary()


class Metrics:
    """The app's registry and the instruments the daemon updates."""

    def __init__(self, services: Services) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgewatch_http_requests", "HTTP requests answered, by route template",
                                ["route", "method", "status", "module"], registry=registry)
        self.latency = Histogram("edgewatch_http_request_duration_seconds",
                                 "time from a request's arrival at its route to the last byte of its answer",
                                 ["module"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inference = Histogram("edgewatch_inference_seconds", "the backend's inference time of one request",
                                   ["module", "model", "backend"], buckets=INFERENCE_BUCKETS, registry=registry)
        self.pre_post = Histogram("edgewatch_pre_post_seconds",
                                  "decoding, preprocessing and postprocessing of one detection "
                                  "(processMs - inferenceMs)",
                                  ["module", "model", "backend"], buckets=INFERENCE_BUCKETS, registry=registry)
        self.predictions = Counter("edgewatch_predictions", "objects in detection answers (REST and MQTT), by label",
                                   ["module", "label"], registry=registry)
        self.mqtt_published = Counter("edgewatch_mqtt_published",
                                      "MQTT messages published (QoS 1 ones once the broker acknowledged them)",
                                      registry=registry)
        self.mqtt_job_replies = Counter("edgewatch_mqtt_job_replies", "answers to MQTT jobs, by the envelope's code",
                                        ["status"], registry=registry)
        self.queue_full = Counter("edgewatch_inference_queue_full",
                                  "requests and MQTT jobs refused because the inference queue was full (503)",
                                  registry=registry)
        Gauge("edgewatch_build_info", "the running edgewatch version", ["version"],
              registry=registry).labels(__version__).set(1)
        ProcessCollector(registry=registry)
        registry.register(_StateCollector(services))
        self.services = services  # what the MQTT stats read (daemon/mqtt/stats.py): cameras, queue
        _by_queue[services.queue] = self

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    def observe_response(self, scope: Scope, status: int, seconds: float | None) -> None:
        handler = scope.get("route_handler")
        module = str((getattr(handler, "opt", None) or {}).get("module") or "")
        route = scope.get("path_template") or UNMATCHED  # the template, not the path: bounded label values
        method = scope.get("method", "")
        self.requests.labels(route, method if method in _METHODS else "other", str(status), module).inc()
        if seconds is not None:
            self.latency.labels(module).observe(seconds)


def observe_inference(queue: InferenceQueue, module: str, model: str, inference_ms: float, *,
                      process_ms: float | None = None, backend: str = "", found: Iterable[str] = ()) -> None:
    """Record one inference's backend time on the metrics of the app that owns ``queue``; with
    ``process_ms`` (the whole detection) the time around it too, and the labels ``found`` (an answer's
    predictions)."""
    metrics = _by_queue.get(queue)
    if metrics is not None:
        metrics.inference.labels(module, model, backend).observe(inference_ms / 1000.0)
        if process_ms is not None:
            metrics.pre_post.labels(module, model, backend).observe(max(0.0, process_ms - inference_ms) / 1000.0)
        for label in found:
            metrics.predictions.labels(module, label).inc()


def metrics_for(queue: InferenceQueue) -> Metrics | None:
    """The metrics of the app that owns ``queue`` (None outside an app, as in some tests)."""
    return _by_queue.get(queue)


def count_queue_full(queue: InferenceQueue) -> None:
    """Count one refusal by the full ``queue`` on the metrics of the app that owns it."""
    metrics = _by_queue.get(queue)
    if metrics is not None:
        metrics.queue_full.inc()


async def count_response(message: Message, scope: Scope) -> None:
    """Litestar ``before_send`` hook: count every answer, an unknown route's and a refusal's too
    (app middleware runs only once a route has been found). The latency runs from
    :func:`~edgewatch.daemon.app.stamp_arrival`'s stamp, so it covers requests that reached a route."""
    if message["type"] == "http.response.start":
        scope.setdefault("state", {})["metrics_status"] = message["status"]  # type: ignore[typeddict-unknown-key]
        return
    if message["type"] != "http.response.body" or message.get("more_body", False):
        return
    services = scope["app"].state.get("services")
    metrics: Metrics | None = getattr(services, "metrics", None)
    state = scope.get("state", {})
    if metrics is None or "metrics_status" not in state:
        return
    arrived = state.get("received_at")
    metrics.observe_response(scope, state.pop("metrics_status"),
                             time.perf_counter() - arrived if arrived is not None else None)


class _StateCollector(Collector):
    """What the daemon's parts report about themselves, read at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterable:
        services = self.services
        queue = services.queue
        yield GaugeMetricFamily("edgewatch_inference_queue_depth",
                                "inference jobs waiting or running", value=queue.pending)
        yield GaugeMetricFamily("edgewatch_inference_queue_capacity",
                                "jobs waiting or running beyond which requests are refused", value=queue.queue_size)
        yield GaugeMetricFamily("edgewatch_inference_workers", "inference worker threads", value=queue.workers)
        yield GaugeMetricFamily("edgewatch_inference_workers_busy", "inference workers running a job now",
                                value=queue.busy)
        yield from self._cameras()
        if services.mqtt is not None:
            yield GaugeMetricFamily("edgewatch_mqtt_connected", "1 while connected to the MQTT broker",
                                    value=int(services.mqtt.state().connected))
        threads = proc_status()[1]
        if threads is not None:
            yield GaugeMetricFamily("edgewatch_process_threads", "the process's threads (native ones included)",
                                    value=threads)
        celsius = cpu_temperature()
        if celsius is not None:
            yield GaugeMetricFamily("edgewatch_cpu_temperature_celsius",
                                    "the CPU's temperature (the hottest cpu/soc thermal zone)", value=celsius)
        space = disk_space(services.config.data_dir)
        if space is not None:
            yield GaugeMetricFamily("edgewatch_data_disk_free_bytes",
                                    "free bytes on the data dir's disk (faces, settings, models)", value=space[0])
            yield GaugeMetricFamily("edgewatch_data_disk_size_bytes", "size of the data dir's disk", value=space[1])

    def _cameras(self) -> Iterable:
        connected = GaugeMetricFamily("edgewatch_camera_connected", "1 while a camera's frames arrive", labels=["camera"])
        families = {key: CounterMetricFamily(f"edgewatch_camera_{name}", text, labels=["camera"])
                    for key, name, text in (("frames_seen", "frames", "frames the camera's worker has taken"),
                                            ("detections", "detections", "detections on the camera's frames"),
                                            ("skipped_busy", "skipped_busy",
                                             "frames skipped because the inference queue was busy"),
                                            ("reconnects", "reconnects", "attempts to reopen the camera"),
                                            ("motion_skipped", "motion_skipped",
                                             "frames the motion gate found still, so not detected"))}
        objects = CounterMetricFamily("edgewatch_camera_objects", "objects the camera's detections found, after its "
                                      "filters, by label", labels=["camera", "label"])
        cameras = self.services.cameras
        for name, state in (cameras.states() if cameras is not None else {}).items():
            connected.add_metric([name], int(bool(state.get("connected"))))
            for key, family in families.items():
                if isinstance(state.get(key), (int, float)):
                    family.add_metric([name], state[key])  # counts since the camera's worker started
            for label, count in (state.get("objects") or {}).items():
                objects.add_metric([name, label], count)
        yield connected
        yield from families.values()
        yield objects
