"""`edgewatch models install iris-emotion`: the text emotion classifier from its PyPI wheel into the store.

The wheel ships a TensorFlow SavedModel (Keras BiLSTM), its Keras ``Tokenizer`` as a pickle, and
``SA_API.py``, the code that says the label order and how the model is fed. The install:

1. fetches the wheel and verifies every pinned file's sha256;
2. reads the label order and the padding (``maxlen``, ``padding``, ``truncating``) from ``SA_API.py``
   without running it (``ast``), and refuses labels that differ from the catalogue's;
3. reads the tokenizer pickle with :class:`~edgewatch.models.runtime.emotion.RestrictedTokenizerUnpickler`
   (no code runs: every global but the Tokenizer class and the dicts it holds is refused);
4. converts the SavedModel to ONNX once with tf2onnx in the TensorFlow converter venv
   (models.conversion.converter_env: the daemon never imports TensorFlow), and has TensorFlow run the
   SavedModel itself on :data:`SENTENCES`, the reference the ONNX model must reproduce;
5. writes the tokenizer as JSON into the ONNX file's metadata, so the store's one file carries it;
6. checks the ONNX model against the SavedModel (same top label on every sentence, probabilities
   within :data:`MAX_PROB_DIFF`), measures its accuracy on the labelled :data:`SENTENCES` and its
   latency here, and records all of it in the manifest's ``quantization_report``.

The build is cached under ``<cache>/conversions/<key>`` (key: the source files' sha256 and the recipe).
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgewatch.models.catalogue import CatalogueEntry
from edgewatch.models.files import atomic_write_json, sha256_file
from edgewatch.models.installer import InstallError, already_installed, cached_build, check_licence
from edgewatch.models.manifest import ModelManifest, Variant
from edgewatch.models.packages import fetch_verified
from edgewatch.models.runtime.emotion import TOKENIZER_KEY, read_tokenizer_pickle
from edgewatch.models.runtime.heads import HEADS
from edgewatch.models.store import ModelStore

RECIPE = "tf2onnx1.17-savedmodel-opset13/keras-tokenizer-json-in-metadata/agreement-vs-savedmodel/v1"
OPSET = 13
VARIANT, FILE = "fp32", "fp32.onnx"
API_FILE = "iris_emotion/SA_API.py"
TOKENIZER_FILE = "iris_emotion/tokenizer.pickle"
MAX_PROB_DIFF = 1e-3  # the ONNX model's probabilities may differ from TensorFlow's by at most this
CONVERT_TIMEOUT_S = 15 * 60
TIMED_RUNS = 30

# Labelled English sentences (10 per label), written for edgewatch: no registry package ships the
# dair-ai "emotion" data (searched for on PyPI and npm). The install's agreement check runs them
# through TensorFlow and ONNX Runtime; their accuracy is recorded, and tests/test_emotion.py holds
# the model to it.
SENTENCES: tuple[tuple[str, str], ...] = (
    ("i feel so happy and cheerful today", "joy"),
    ("i am feeling really content with how my life is going", "joy"),
    ("i feel delighted that the sun is finally out", "joy"),
    ("i feel great after a long walk with my dog", "joy"),
    ("i feel proud of what my team achieved this year", "joy"),
    ("i am thrilled and excited about the holiday", "joy"),
    ("i feel so relaxed and peaceful on a sunday morning", "joy"),
    ("i feel confident that the project will succeed", "joy"),
    ("i was feeling pleased with the results of the exam", "joy"),
    ("i feel joyful when my family is together", "joy"),
    ("i feel scared walking home alone at night", "fear"),
    ("i am terrified of what the doctor will say", "fear"),
    ("i feel anxious about the interview tomorrow", "fear"),
    ("i feel nervous every time the phone rings", "fear"),
    ("i was feeling afraid when the lights went out", "fear"),
    ("i feel frightened by the strange noises outside", "fear"),
    ("i feel worried and uneasy about the storm", "fear"),
    ("i feel so insecure around new people", "fear"),
    ("i feel panicked when i think about the deadline", "fear"),
    ("i feel shaky and scared before every flight", "fear"),
    ("i feel so angry that they lied to me", "anger"),
    ("i am furious about the broken promises", "anger"),
    ("i feel irritated by the constant noise from next door", "anger"),
    ("i feel annoyed when people are late", "anger"),
    ("i feel outraged by how they treated the workers", "anger"),
    ("i was feeling really mad at my brother", "anger"),
    ("i feel resentful that nobody helped me", "anger"),
    ("i feel so frustrated with this stupid computer", "anger"),
    ("i feel bitter about the way it ended", "anger"),
    ("i feel hostile towards the people who cheated", "anger"),
    ("i feel so sad and lonely since she left", "sadness"),
    ("i feel miserable and hopeless today", "sadness"),
    ("i am feeling depressed about losing my job", "sadness"),
    ("i feel heartbroken after the funeral", "sadness"),
    ("i feel unhappy and empty inside", "sadness"),
    ("i feel like a failure and i cannot stop crying", "sadness"),
    ("i feel so gloomy on these grey days", "sadness"),
    ("i feel guilty for forgetting her birthday", "sadness"),
    ("i feel devastated by the news", "sadness"),
    ("i feel exhausted and down all the time", "sadness"),
    ("i feel so loving towards my wife", "love"),
    ("i feel affectionate when he holds my hand", "love"),
    ("i feel romantic on our anniversary", "love"),
    ("i feel tender and caring towards my newborn son", "love"),
    ("i feel passionate about the man i love", "love"),
    ("i feel so fond of my grandmother", "love"),
    ("i feel longing for my girlfriend when she is away", "love"),
    ("i feel sympathetic towards anyone who is struggling", "love"),
    ("i feel devoted to my family", "love"),
    ("i feel compassionate towards the refugees", "love"),
    ("i feel amazed by how fast the children grew", "surprise"),
    ("i feel shocked that he actually showed up", "surprise"),
    ("i feel surprised by the sudden announcement", "surprise"),
    ("i feel astonished at the size of the crowd", "surprise"),
    ("i feel stunned by the news of their wedding", "surprise"),
    ("i feel so curious about what is inside the box", "surprise"),
    ("i feel amazed that the old car still runs", "surprise"),
    ("i was feeling overwhelmed and shocked by the results", "surprise"),
    ("i feel impressed by how well the concert went", "surprise"),
    ("i feel funny about the strange coincidence", "surprise"),
)

# Runs in the converter venv: the SavedModel's own serving signature on the ids (.npy) → probabilities (.npy).
_REFERENCE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
name = list(serve.structured_input_signature[1])[0]
out = serve(**{name: tf.constant(np.load(sys.argv[2]).astype(np.float32))})
np.save(sys.argv[3], np.asarray(list(out.values())[0], np.float32))
print("[emotion-reference] tensorflow", tf.__version__, "input", name)
"""


def install_emotion_model(entry: CatalogueEntry, store: ModelStore, cache: Path,
                          accept_licences: Iterable[str] = ()) -> tuple[ModelManifest, bool]:
    """Install ``entry`` (a text_emotion catalogue entry); (manifest, True if already installed)."""
    check_licence(entry, accept_licences)
    if (current := already_installed(entry, store, RECIPE)) is not None:
        return current, True
    built, report = cached_build(cache, _key(entry), lambda out: _build(entry, out, cache))
    manifest = ModelManifest(
        name=entry.name, title=entry.title, task=entry.task, labels=entry.label_names,
        input=entry.input.model_copy(update={"name": report["input_name"]}), preprocessing=entry.preprocessing,
        postprocessing=entry.postprocessing, source=entry.source, license=entry.source.license,
        license_note=entry.license_note, variants={VARIANT: Variant(**report["variant"])},
        default_variant=VARIANT, quantization_report=report["report"])
    return store.commit(manifest, {VARIANT: built / FILE}), False


def _key(entry: CatalogueEntry) -> str:
    blob = json.dumps({"files": sorted(entry.source.files.items()), "recipe": RECIPE,
                       "labels": list(entry.label_names), "sentences": SENTENCES})
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def package_settings(api_source: str) -> dict:
    """From the package's ``SA_API.py``, read without running it: ``classes`` (the model's output
    order) and the ``maxlen``, ``padding`` and ``truncating`` its ``get_sequences`` pads with."""
    tree = ast.parse(api_source)
    found: dict = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name in ("classes", "maxlen"):
                found[name] = ast.literal_eval(node.value)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "pad_sequences":
            for kw in node.keywords:
                if kw.arg in ("padding", "truncating") and isinstance(kw.value, ast.Constant):
                    found[kw.arg] = kw.value.value
    missing = {"classes", "maxlen", "padding", "truncating"} - set(found)
    if missing:
        raise InstallError(f"{API_FILE} does not say {', '.join(sorted(missing))}: not the code this installer knows")
    return found


def _build(entry: CatalogueEntry, out: Path, cache: Path) -> None:
    import onnx
    import onnxruntime as ort

    from edgewatch.models.conversion.converter_env import ensure_converter_env

    files = fetch_verified(entry.source, cache)
    settings = package_settings(files[API_FILE].read_text(encoding="utf-8"))
    if tuple(settings["classes"]) != entry.label_names:
        raise InstallError(f"{entry.name}: the package's code orders the labels {settings['classes']}, the catalogue "
                           f"{list(entry.label_names)}: fix the catalogue")
    if settings["maxlen"] != entry.input.shape[2]:
        raise InstallError(f"{entry.name}: the package pads to {settings['maxlen']} words, the catalogue's input is "
                           f"{entry.input.shape[2]} wide")
    tokenizer = read_tokenizer_pickle(files[TOKENIZER_FILE], settings["maxlen"], settings["padding"],
                                      settings["truncating"])
    texts = [text for text, _ in SENTENCES]
    ids = tokenizer.encode(texts).astype(np.float32)

    python = ensure_converter_env(cache, progress=print)
    saved_model = files[entry.model_file].parent
    converted = out / "converted.onnx"
    began = time.monotonic()
    _run(entry.name, "tf2onnx", [str(python), "-I", "-m", "tf2onnx.convert", "--saved-model", str(saved_model),
                                 "--output", str(converted), "--opset", str(OPSET)], out)
    reference = savedmodel_probabilities(python, saved_model, ids, out)
    convert_s = time.monotonic() - began

    model = onnx.load(str(converted))
    onnx.helper.set_model_props(model, {TOKENIZER_KEY: tokenizer.to_json(), "labels": json.dumps(entry.label_names)})
    path = out / FILE
    onnx.save(model, str(path))
    converted.unlink()

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    decode = HEADS[entry.postprocessing].decoder
    ours = decode(session.run(None, {input_name: ids}))
    theirs = decode([reference])
    max_diff = float(np.abs(ours - theirs).max())
    same_top = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    if same_top < 1.0 or max_diff > MAX_PROB_DIFF:
        raise InstallError(f"{entry.name}: the ONNX conversion does not reproduce the SavedModel (same top label on "
                           f"{same_top:.0%} of {len(texts)} sentences, probabilities up to {max_diff:.2g} apart; at most "
                           f"{MAX_PROB_DIFF} allowed)")
    truth = np.asarray([entry.label_names.index(label) for _, label in SENTENCES])
    accuracy = float(np.mean(ours.argmax(1) == truth))
    single, batch = _latency(session, input_name, ids)
    variant = Variant(file=FILE, sha256=sha256_file(path), precision="fp32", size_bytes=path.stat().st_size,
                      inference_ms_p50=round(single, 3), runtime="onnx",
                      source_sha256=entry.source.files[entry.model_file], toolkit=f"tf2onnx 1.17.0 opset {OPSET}",
                      faithful_to_fp32=True,
                      fidelity=f"same top label as the SavedModel on {len(texts)}/{len(texts)} sentences, "
                               f"probabilities within {max_diff:.1e}")
    atomic_write_json(out / "report.json", {
        "input_name": input_name, "variant": variant.model_dump(mode="json"),
        "report": {"recipe": RECIPE, "sentences": len(texts), "agreement_top1_vs_savedmodel": same_top,
                   "max_prob_diff_vs_savedmodel": float(f"{max_diff:.3g}"), "accuracy_on_sentences": round(accuracy, 4),
                   "ms_p50_one_text": round(single, 3), "ms_p50_per_text_batch": round(batch / len(texts), 4),
                   "convert_s": round(convert_s, 1), "onnxruntime": ort.__version__,
                   "tokenizer": f"{TOKENIZER_FILE} (restricted unpickler), {len(tokenizer.word_index)} words, "
                                f"maxlen {tokenizer.maxlen} {tokenizer.padding}-padded",
                   "reason": "fp32 only: 713 KB already; no int8 gate for text classifiers"}})


def _run(name: str, what: str, cmd: list[str], cwd: Path) -> None:
    from edgewatch.models.conversion.tool_env import run_streaming, tail_text

    rc, lines = run_streaming(cmd, timeout_s=CONVERT_TIMEOUT_S, cwd=cwd)
    if rc != 0:
        raise InstallError(f"{name}: {what} failed ({'timed out' if rc == -1 else f'exit {rc}'}):\n{tail_text(lines)}")


def savedmodel_probabilities(python: Path, saved_model: Path, ids: np.ndarray, work: Path) -> np.ndarray:
    """The package's SavedModel run by TensorFlow itself (in the converter venv at ``python``) on
    N×maxlen word ids: its N×C probabilities, the reference the ONNX model must reproduce."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=work, prefix="emotion-reference-") as tmp:
        ids_file, ref_file = Path(tmp) / "ids.npy", Path(tmp) / "reference.npy"
        np.save(ids_file, np.asarray(ids, np.float32))
        _run(saved_model.name, "the SavedModel's reference run",
             [str(python), "-I", "-c", _REFERENCE_SCRIPT, str(saved_model), str(ids_file), str(ref_file)], Path(tmp))
        return np.load(ref_file)


def _latency(session, input_name: str, ids: np.ndarray) -> tuple[float, float]:
    """(p50 ms of one text, p50 ms of the whole batch) on ONNX Runtime here."""
    def p50(batch: np.ndarray) -> float:
        session.run(None, {input_name: batch})
        times = []
        for _ in range(TIMED_RUNS):
            began = time.perf_counter()
            session.run(None, {input_name: batch})
            times.append((time.perf_counter() - began) * 1000)
        return float(np.median(times))

    return p50(ids[:1]), p50(ids)

