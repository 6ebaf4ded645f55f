"""Backend benchmark: every backend/variant that can run here, against onnxruntime fp32.

    python bench/backends.py [--model nanodet ...] [--added] [--runs 40] [--concurrency 4]

Uses the models from EDGEWATCH_DATA_DIR's store (or installs a catalogue one into a temporary one);
``--added`` adds every detector added with `edgewatch models add` (an .rknn, .tflite or .onnx of
any layout it knows). For each backend available on this machine and each variant of a model it
can run: p50/p95 latency with 1 and N concurrent requests, throughput, and agreement with the fp32
ONNX on the real photos where the model has one; ratios are against onnxruntime fp32 measured in
the same run (or the model's first row). Then the host post-processing per output layout at
640×640 with 80 classes (bench/postprocess.py): what each layout costs the CPU besides the
accelerator's time. Users run the same command on their boards.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
from edgewatch.backends.registry import PROBE_ORDER
from edgewatch.backends.rknn import RknnBackend, RknnConfig
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.convert import agreement_with
from edgewatch.models.installer import install
from edgewatch.models.photos import ensure_photos
from edgewatch.models.runtime.preprocess import letterbox
from edgewatch.models.store import ModelStore


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def measure(backend, tensor: np.ndarray, runs: int, concurrency: int) -> dict[str, float]:
    until = time.perf_counter() + 1.0
    while time.perf_counter() < until:
        backend.infer(tensor)

    def timed(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            backend.infer(tensor)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    t0 = time.perf_counter()
    single = timed(runs)
    single_rps = runs / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        multi = [x for chunk in pool.map(timed, [max(1, runs // concurrency)] * concurrency) for x in chunk]
    multi_rps = len(multi) / (time.perf_counter() - t0)
    return {"p50": statistics.median(single), "p95": pct(single, 95), "rps": single_rps,
            "p50_n": statistics.median(multi), "p95_n": pct(multi, 95), "rps_n": multi_rps}


def bench_model(store: ModelStore, name: str, images: list[np.ndarray], runs: int, concurrency: int) -> None:
    """Every backend and variant of ``name`` that runs here, printed as a table."""
    manifest = store.get(name)
    reference = None
    if "fp32" in manifest.variants and manifest.variants["fp32"].runtime == "onnx":
        reference = OnnxRuntimeCpuBackend()
        reference.load(store.path(manifest, "fp32"), manifest, "fp32")
        ref_tensors = [letterbox(img, *reference.input_format())[0] for img in images]
    rows = []
    for cls in PROBE_ORDER:
        probe = cls.probe()
        variants = [k for k, v in manifest.variants.items() if v.runtime == cls.runtime]
        if not probe.available or not variants:
            print(f"# {name} on {cls.type_key}: skipped ({probe.reason if not probe.available else 'no variant'})",
                  file=sys.stderr)
            continue
        # the RK3588's NPU cores: one runtime per core vs one runtime on all three, measured side by side
        configs = [(f" {m}", RknnConfig(core_mode=m)) for m in ("per-core", "all-cores")] if cls is RknnBackend \
            else [("", None)]
        for variant in variants:
            for label, config in configs:
                backend = cls(config)
                backend.load(store.path(manifest, variant), manifest, variant)
                tensors = [letterbox(img, *backend.input_format())[0] for img in images]
                stats = measure(backend, tensors[0], runs, concurrency)
                stats["agreement"] = agreement_with(reference.infer, backend.infer, ref_tensors, tensors,
                                                    manifest.postprocessing, manifest.input.size) if reference else None
                rows.append((f"{cls.type_key}/{variant}{label}", backend.execution_provider, stats))
                backend.close()
    if reference:
        reference.close()
    if not rows:
        print(f"{name}: no backend here runs it (`edgewatch status` says why)")
        return
    base_name = next((row for row, _, _ in rows if row == "onnxruntime/fp32"), rows[0][0])
    base = next(st for row, _, st in rows if row == base_name)
    print(f"model {name} ({manifest.postprocessing}), input {manifest.input.size}, {os.cpu_count()} cores, "
          f"{runs} runs, N={concurrency} concurrent; speed vs {base_name} in this run")
    print(f"{'backend/variant':26} {'device':16} {'p50 ms':>7} {'p95 ms':>7} {'req/s':>7} "
          f"{'p50@N':>7} {'p95@N':>7} {'req/s@N':>8} {'speed x':>8} {'agree':>6}")
    for row, device, st in rows:
        agree = f"{st['agreement']:6.1%}" if st["agreement"] is not None else f"{'-':>6}"
        print(f"{row:26} {device:16} {st['p50']:7.2f} {st['p95']:7.2f} {st['rps']:7.1f} {st['p50_n']:7.2f} "
              f"{st['p95_n']:7.2f} {st['rps_n']:8.1f} {base['p50'] / st['p50']:8.2f} {agree}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="a model in the store, or a catalogue one to install "
                                                      "(repeatable; default nanodet)")
    ap.add_argument("--added", action="store_true", help="also every detector added with `edgewatch models add`")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    cache = Path(os.environ.get("EDGEWATCH_CACHE_DIR") or default_cache_dir())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(os.environ["EDGEWATCH_DATA_DIR"]) if os.environ.get("EDGEWATCH_DATA_DIR") else Path(tmp)
        store = ModelStore(data / "models")
        names = list(args.model or ["nanodet"])
        if args.added:
            names += [m.name for m in store.list() if m.source.registry == "local" and m.task == "detection"
                      and m.name not in names]
        images = [cv2.imread(str(p)) for p in ensure_photos(cache).values()]
        for name in names:
            if not store.has(name):
                install(name, store, cache)
            bench_model(store, name, images, args.runs, args.concurrency)
            print()
        if not store.has("nanodet"):
            install("nanodet", store, cache)  # its real outputs, wrapped in each layout, feed the table below
        from postprocess import TARGET_MS, postprocess_table  # bench/postprocess.py, beside this file

        table = postprocess_table(store, ensure_photos(cache, ["bus"])["bus"], runs=100)
    print(f"host post-processing per frame (dequantise + decode + NMS), 640x640, 80 classes, p50; "
          f"target <= {TARGET_MS:g} ms")
    print(f"{'layout':15} {'float ms':>9} {'uint8 ms':>9}")
    for r in table:
        print(f"{r['layout']:15} {r['float_ms']:9.3f} {r['uint8_ms']:9.3f}")


if __name__ == "__main__":
    main()
