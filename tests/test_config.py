from pathlib import Path

import pytest

from edgewatch.backends.registry import BACKENDS
from edgewatch.daemon.config import ConfigError, load_settings


def test_embedded_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEWATCH_DATA_DIR", raising=False)
    s = load_settings()
    assert s.server.port == 32168 and s.server.host == "0.0.0.0"
    assert s.backend == "auto" and s.detection.min_confidence == 0.4


def test_yaml_then_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "edgewatch.yaml"
    cfg.write_text("server:\n  port: 8000\ndetection:\n  min_confidence: 0.6\nbackend: onnxruntime\n")
    monkeypatch.setenv("EDGEWATCH_SERVER_PORT", "9000")
    monkeypatch.setenv("EDGEWATCH_DATA_DIR", str(tmp_path / "d"))
    s = load_settings(cfg)
    assert s.server.port == 9000  # env beats file
    assert s.detection.min_confidence == 0.6  # file beats default
    assert s.backend == "onnxruntime"
    assert s.data_dir == tmp_path / "d"


@pytest.mark.parametrize("text, key, expect", [
    ("server:\n  port: 70000\n", "server.port", "less than or equal to 65535"),
    ("detection:\n  min_confidnce: 0.5\n", "detection.min_confidnce", "unknown key"),
    ("backend: npu\n", "backend", "'auto', 'rknn'"),
    ("detection:\n  label_style: old\n", "detection.label_style", "'coco' or 'legacy'"),
])
def test_errors_name_the_key_and_what_is_expected(tmp_path: Path, text: str, key: str, expect: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert key in str(err.value) and expect in str(err.value)


def test_bad_env_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEWATCH_INFERENCE_WORKERS", "many")
    with pytest.raises(ConfigError, match="inference.workers"):
        load_settings()


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(bad)


def test_overlapping_requests_share_the_cores_out_by_workers(tmp_path: Path) -> None:
    cfg = tmp_path / "edgewatch.yaml"
    cfg.write_text("inference:\n  workers: 4\nbackends:\n  onnxruntime: {threads: 8}\n  tflite: {threads: 4}\n")
    configs = load_settings(cfg).backends.by_key(tmp_path, workers=4)
    assert configs["onnxruntime"].split_threads == 2 and configs["tflite"].split_threads == 1
    cfg.write_text("backends:\n  onnxruntime: {threads: 8, split_threads: 3}\n")
    assert load_settings(cfg).backends.by_key(tmp_path, workers=2)["onnxruntime"].split_threads == 3


def test_backend_choice_and_sections_follow_the_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each registry backend can be chosen and has its own section, typed and defaulted by its config_model."""
    s = load_settings()
    assert list(type(s.backends).model_fields) == list(BACKENDS)
    for key, cls in BACKENDS.items():
        assert getattr(s.backends, key) == cls.config_model()
        assert load_settings(backend=key).backend == key
    monkeypatch.setenv("EDGEWATCH_BACKENDS_RKNN", '{"core_mode": "all-cores"}')
    configs = load_settings().backends.by_key(tmp_path, workers=2)
    assert list(configs) == list(BACKENDS) and configs["rknn"].core_mode == "all-cores"
    assert configs["tensorrt"].engine_dir == tmp_path / "tensorrt"
