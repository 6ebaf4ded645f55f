"""`detection.model: auto`: the most accurate installed detector whose measured latency fits the budget.

The rule is checked on hand-made candidates; the measurement on the real installed models
(NanoDet and CenterNet) with a fresh latency cache; the accuracy figures it ranks by are
re-measured on the evaluation set for fp32, where no CPU difference can move them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.detection import DetectionModule, DetectionSettings, Detector
from edgewatch.daemon.model_choice import Candidate, LatencyCache, choose
from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.models.catalogue import catalogue
from edgewatch.models.evalset import ap50, ensure_evalset_photos
from edgewatch.models.store import ModelStore

from test_cli import cli


def cand(name: str, ap: float | None, ms: float | None) -> Candidate:
    return Candidate(name, "fp32", "onnxruntime", ap, "test", ms)


def test_the_most_accurate_within_budget_else_the_fastest() -> None:
    small, mid, big = cand("small", 0.70, 10), cand("mid", 0.78, 50), cand("big", 0.86, 210)
    assert choose([small, mid, big], 100).name == "mid"
    assert choose([small, mid, big], 300).name == "big"
    assert choose([small, mid, big], 5).name == "small"  # nothing fits: the fastest
    assert "no installed detector fits" in choose([small, mid, big], 5).reason
    assert choose([small, cand("twin", 0.70, 8)], 100).name == "twin"  # equal accuracy: the faster
    # A model of unknown accuracy never beats a measured one, however fast.
    assert choose([cand("mystery", None, 1), small], 100).name == "small"
    assert choose([cand("mystery", None, 1), cand("slow", 0.5, 500)], 100).name == "mystery"
    # One that cannot be loaded is never chosen; if none can, that is an error.
    assert choose([cand("broken", 0.99, None), small], 100).name == "small"
    with pytest.raises(ValueError):
        choose([cand("broken", 0.99, None)], 100)
    reason = choose([small, mid, big], 100).reason
    assert "mid" in reason and "big" in reason and "210 ms" in reason and "100" in reason


def test_latency_cache_survives_damage_and_keys_on_the_file(tmp_path: Path, data_dir: Path) -> None:
    store = ModelStore(data_dir / "models")
    nanodet = store.get("nanodet")
    cache = LatencyCache(tmp_path / "latency.json")
    key = LatencyCache.key(nanodet, "fp32", OnnxRuntimeCpuBackend())
    assert cache.get(key) is None
    cache.put(key, 12.345)
    assert LatencyCache(tmp_path / "latency.json").get(key) == 12.35
    assert LatencyCache.key(nanodet, "int8", OnnxRuntimeCpuBackend()) != key  # another file, another figure
    (tmp_path / "latency.json").write_text("{not json")
    assert cache.get(key) is None  # damaged: measured again, never an error
    cache.put(key, 3.0)
    assert cache.get(key) == 3.0


def _module(data_dir: Path, cache: Path, **detection) -> DetectionModule:
    config = load_settings(data_dir=data_dir, cache_dir=cache, backend="onnxruntime",
                           detection={"model": "auto", **detection})
    return DetectionModule(config, ModelStore(config.models_dir), {})


def test_auto_measures_once_and_chooses_by_the_rule(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    module = _module(data_dir, cache, latency_budget_ms=60_000)
    choice = module.auto_choice()
    by_name = {c.name: c for c in choice.candidates}
    assert set(by_name) == {"nanodet", "centernet"}
    for c in by_name.values():
        assert c.p50_ms is not None and c.p50_ms > 0 and c.backend == "onnxruntime"
        assert c.ap50 == catalogue()[c.name].accuracy[c.variant]  # the variant that runs, its own figure
    # A budget nothing misses: the most accurate, whatever this CPU's speed.
    assert choice.name == "centernet" and by_name["centernet"].ap50 > by_name["nanodet"].ap50
    assert module.default_model_name() == "centernet"
    assert module.backend is not None and module.backend.manifest.name == "centernet"
    saved = json.loads((cache / "latency.json").read_text())
    assert len(saved) == 2
    module.close()

    # Restarted with a budget between the two measured p50s: the faster, more accurate one that fits.
    fast, slow = sorted(by_name.values(), key=lambda c: c.p50_ms)
    again = _module(data_dir, cache, latency_budget_ms=(fast.p50_ms + slow.p50_ms) / 2)
    second = again.auto_choice()
    assert second.name == fast.name
    assert {c.name: c.p50_ms for c in second.candidates} == {c.name: c.p50_ms for c in choice.candidates}, \
        "a restart must take the cached figures, not measure again"
    assert not again._detectors, "nothing is loaded when every figure is cached"
    assert second.name in again.model_summary()[0] and "auto:" in again.model_summary()[1]
    again.close()

    # A budget nothing fits: the fastest.
    tight = _module(data_dir, cache, latency_budget_ms=fast.p50_ms / 100)
    assert tight.auto_choice().name == fast.name and "no installed detector fits" in tight.auto_choice().reason


def test_auto_follows_the_installed_models(data_dir: Path, tmp_path: Path) -> None:
    store = ModelStore(data_dir / "models")
    store.remove("centernet")
    module = _module(data_dir, tmp_path / "cache", latency_budget_ms=60_000)
    choice = module.auto_choice()
    assert choice.name == "nanodet" and "only installed" in choice.reason
    assert not (tmp_path / "cache" / "latency.json").exists(), "one detector: nothing to measure"
    module.close()


def test_named_model_wins_over_auto(data_dir: Path, tmp_path: Path) -> None:
    module = _module(data_dir, tmp_path / "cache", latency_budget_ms=60_000)
    module.apply(DetectionSettings.model_validate(module.settings.model_dump() | {"model": "nanodet"}))
    assert module.default_model_name() == "nanodet"
    assert module.model_summary() == ("nanodet", "set by detection.model")
    assert not (tmp_path / "cache" / "latency.json").exists()
    module.close()


def test_models_list_says_which_and_why(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"EDGEWATCH_BACKEND": "onnxruntime"}
    before = json.loads(cli("models", "list", "--json", data_dir=data_dir, cache_dir=cache, env=env).stdout)["default_detector"]
    assert before["model"] is None and "measures" in before["reason"]  # not measured yet: says when it will be
    module = _module(data_dir, cache)
    chosen = module.auto_choice().name
    module.close()
    out = cli("models", "list", data_dir=data_dir, cache_dir=cache, env=env).stdout
    assert f"default detector: {chosen}: auto: " in out and "budget" in out
    after = json.loads(cli("models", "list", "--json", data_dir=data_dir, cache_dir=cache, env=env).stdout)["default_detector"]
    assert after["model"] == chosen and len(after["candidates"]) == 2


@pytest.mark.parametrize("name", ["nanodet", "centernet"])
def test_catalogue_accuracy_is_what_the_evaluation_set_measures(name: str, installed_data_dir: Path,
                                                                 cache_dir: Path) -> None:
    """The fp32 figure auto ranks by, re-measured the way bench/accuracy.py does (fp32 rounds the
    same on every CPU to well within the tolerance)."""
    store = ModelStore(installed_data_dir / "models")
    manifest = store.get(name)
    photos = ensure_evalset_photos(cache_dir, progress=lambda _m: None)
    backend = OnnxRuntimeCpuBackend()
    backend.load(store.path(manifest, "fp32"), manifest, "fp32")
    detector = Detector(manifest, backend)
    settings = DetectionSettings(max_predictions=100)
    detections = []
    for _, path in photos:
        preds = detector.detect_frame(cv2.imread(str(path), cv2.IMREAD_COLOR), 0.01, settings).predictions
        detections.append(([(p.x_min, p.y_min, p.x_max, p.y_max) for p in preds],
                           [p.confidence for p in preds], [p.label for p in preds]))
    backend.close()
    _, groups = ap50([list(p.boxes) for p, _ in photos], detections)
    assert groups["overall"].pooled_ap50 == pytest.approx(catalogue()[name].accuracy["fp32"], abs=0.01)


def test_auto_is_accepted_by_settings_and_reported(data_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    from test_api import make_client

    with make_client(data_dir, tmp_path / "cache") as client:
        settings = client.get("/v1/settings/ObjectDetectionEdgewatch").json()["settings"]
        assert settings["model"] == "auto" and settings["latency_budget_ms"] == 100
        inference = client.get("/v1/status/version").json()["inference"]
        assert inference["model"] in {"nanodet", "centernet"} and inference["modelReason"].startswith("auto: ")
        r = client.post("/v1/settings/ObjectDetectionEdgewatch", data={"name": "model", "value": "nanodet"})
        assert r.status_code == 200 and client.get("/v1/status/version").json()["inference"]["model"] == "nanodet"
        r = client.post("/v1/settings/ObjectDetectionEdgewatch", data={"name": "model", "value": "auto"})
        assert r.status_code == 200
        assert client.get("/v1/status/version").json()["inference"]["modelReason"].startswith("auto: ")
        r = client.post("/v1/settings/ObjectDetectionEdgewatch", data={"name": "latency_budget_ms", "value": "-5"})
        assert r.status_code == 400 and "latency_budget_ms" in r.json()["error"]
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


def test_a_box_whose_models_all_fail_to_load_still_serves(data_dir: Path, tmp_path: Path, photo_bytes) -> None:
    """Damaged model files (a bad SD card): the daemon starts, says why in the log, and every
    detection answers 503 with what to do, instead of a crash at start or a 500."""
    from test_api import make_client

    store = ModelStore(data_dir / "models")
    for m in store.list():
        for key in m.variants:
            store.path(m, key).write_bytes(b"not a model")
    with make_client(data_dir, tmp_path / "cache") as client:
        assert client.get("/v1/status/ping").json()["success"] is True
        from edgewatch.daemon.app import serving_status

        assert "no installed detector loads here" in serving_status(client.app)
        r = client.post("/v1/vision/detection", files={"image": photo_bytes["bus"]})
        assert r.status_code == 503 and r.json()["success"] is False
        assert "edgewatch models install" in r.json()["error"]
        r = client.post("/v1/vision/custom/nanodet", files={"image": photo_bytes["bus"]})
        assert r.status_code == 503 and "nanodet" in r.json()["error"]
