"""The task API (/backprop, the Backprop API of shared/spec/backprop-api.md) through the daemon's app:
keys (401 without, 403 wrong, hashes only in the config, not changeable over the network), the spec's
own examples sent as its clients send them, vectorisation, zero-shot text classification measured on
3,000 labelled review sentences' domains, zero-shot image classification on the project's photos, and
bad bodies answered with a message."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import ConfigError, load_settings
from edgewatch.daemon.modules.taskapi.auth import KeyError_, check, hash_key
from edgewatch.daemon.modules.text.dataset import labelled_sentences
from edgewatch.models.installer import install
from edgewatch.models.store import ModelStore
from scratch import scratch_dir

KEY = "test-key-1f9e2b"
MODULE = "TaskApiEdgewatch"


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    data = scratch_dir(request, tmp_path_factory, "task-api")
    for name in ("minilm-l6", "mobilenet-v2", "iris-emotion", "smollm2-135m"):
        install(name, ModelStore(data / "models"), cache_dir)
    return data


@pytest.fixture(scope="module")
def client(data: Path, cache_dir: Path):
    config = load_settings(data_dir=data, cache_dir=cache_dir, task_api={"keys": {"ci": hash_key(KEY)}})
    with TestClient(create_app(config)) as c:
        c.headers["x-api-key"] = KEY
        yield c


def post(client: TestClient, route: str, body) -> dict:
    response = client.post(f"/backprop{route}", content=json.dumps(body),
                           headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_keys_401_without_403_wrong_and_only_hashes_in_the_config(client: TestClient, data: Path,
                                                                   cache_dir: Path) -> None:
    body = {"text": "iPhone 12 128GB", "model": "english"}
    missing = client.post("/backprop/text-vectorisation", json=body, headers={"x-api-key": ""})
    assert missing.status_code == 401 and "x-api-key" in missing.json()["message"]
    wrong = client.post("/backprop/text-vectorisation", json=body, headers={"x-api-key": "not-the-key"})
    assert wrong.status_code == 403 and wrong.json()["message"].startswith("Forbidden")
    assert set(wrong.json()) == {"message"}
    # the settings show the key's name, never its hash; keys are changed in the config file only
    shown = client.get(f"/v1/settings/{MODULE}").json()["settings"]
    assert shown["keys"] == {"ci": "***"} and hash_key(KEY) not in json.dumps(shown)
    refused = client.post(f"/v1/settings/{MODULE}", json={"keys": {"mallory": hash_key("x")}})
    assert refused.status_code == 403 and "config file only" in refused.json()["error"]
    assert client.post(f"/v1/settings/{MODULE}", json={"local_without_key": "true"}).status_code == 403
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir=data, cache_dir=cache_dir, task_api={"keys": {"bob": "plain-key-in-the-config"}})
    assert "never the key itself" in str(err.value) and "plain-key-in-the-config" not in str(err.value)


def test_without_keys_only_the_box_itself_may_call() -> None:
    from edgewatch.daemon.config import TaskApiConfig

    open_box = TaskApiConfig()
    assert check(open_box, None, "127.0.0.1") == "local" and check(open_box, None, "::1") == "local"
    with pytest.raises(KeyError_) as err:
        check(open_box, None, "192.168.1.30")
    assert err.value.status == 401 and "edgewatch task-api new-key" in err.value.message
    with pytest.raises(KeyError_):
        check(TaskApiConfig(local_without_key=False), None, "127.0.0.1")
    keyed = TaskApiConfig(keys={"a": hash_key(KEY)})
    assert check(keyed, KEY, "192.168.1.30") == "a"
    with pytest.raises(KeyError_) as err:
        check(keyed, None, "127.0.0.1")  # once keys exist, the box itself sends one too
    assert err.value.status == 401


def test_new_key_prints_a_key_whose_config_line_lets_it_in(tmp_path: Path, cache_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "edgewatch.daemon.cli", "task-api", "new-key", "alice"],
                         capture_output=True, text=True, check=True).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    key = lines[1]
    stored = next(line.split(": ", 1)[1] for line in lines if line.startswith("alice: "))
    assert stored == hash_key(key) and key not in stored
    config = load_settings(data_dir=tmp_path, cache_dir=cache_dir, task_api={"keys": {"alice": stored}})
    assert check(config.task_api, key, "10.0.0.2") == "alice"


def test_the_spec_examples_work_unchanged(client: TestClient) -> None:
    single = post(client, "/text-vectorisation", {"text": "iPhone 12 128GB", "model": "english"})
    assert set(single) == {"vector"} and len(single["vector"]) == 384
    batch = post(client, "/text-vectorisation", {"text": ["iPhone 12 128GB", "RTX 3090"], "model": "english"})
    assert set(batch) == {"vectorList"} and len(batch["vectorList"]) == 2
    assert np.allclose(batch["vectorList"][0], single["vector"], atol=1e-5)
    assert np.linalg.norm(single["vector"]) == pytest.approx(1.0, abs=1e-4)
    found = post(client, "/text-classification", {"text": "I am really mad because my product broke.",
                                                  "labels": ["product issue", "furniture", "space"], "model": "english"})
    probs = found["probabilities"]
    assert found["model"] == "minilm-l6: zero-shot, by the similarity of the text to each label"
    assert max(probs, key=probs.get) == "product issue" and sum(probs.values()) == pytest.approx(1, abs=1e-3)
    both = post(client, "/text-classification", {
        "text": ["I am really mad because my product broke.", "I would like to collaborate with you on social media"],
        "labels": [["product issue", "furniture", "space"], ["product issue", "furniture", "sales"]],
        "model": "english"})
    assert [set(p) for p in both["probabilities"]] == [{"product issue", "furniture", "space"},
                                                      {"product issue", "furniture", "sales"}]
    assert both["probabilities"][0] == pytest.approx(probs, abs=1e-3)


def test_vectors_put_similar_sentences_closer(client: TestClient) -> None:
    vectors = np.array(post(client, "/text-vectorisation", {"text": [
        "The camera spotted a person at the front door.", "Someone was detected by the doorbell camera.",
        "The stock market fell sharply on Tuesday."]})["vectorList"])
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2


@pytest.mark.slow
def test_zero_shot_text_classification_names_the_review_domain(client: TestClient, cache_dir: Path) -> None:
    """Amazon, IMDB and Yelp review sentences (UCI, as npm `sentiment` ships them), 200 of each: which
    of product / movie / restaurant each is about, with no training."""
    labels = ["product", "movie", "restaurant"]
    texts, truth = [], []
    for i, domain in enumerate(("amazon", "imdb", "yelp")):
        sentences = [t for t, _ in labelled_sentences(cache_dir, domain)][::5][:200]
        texts += sentences
        truth += [i] * len(sentences)
    answers = []
    for start in range(0, len(texts), 50):
        chunk = texts[start:start + 50]
        answers += post(client, "/text-classification", {"text": chunk, "labels": [labels] * len(chunk)})["probabilities"]
    predicted = np.array([labels.index(max(p, key=p.get)) for p in answers])
    accuracy = float((predicted == np.array(truth)).mean())
    confidence = float(np.mean([max(p.values()) for p in answers]))
    # measured: 78 % of all 3,000 sentences, mean top probability 0.79 (the scale was fitted so they match)
    assert accuracy >= 0.7, accuracy
    assert abs(confidence - accuracy) <= 0.12, (confidence, accuracy)


@pytest.mark.slow
def test_zero_shot_image_classification_on_the_photos(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    labels = ["a bus", "a person", "a cat", "a cup of coffee", "a motorcycle"]
    truth = {"bus": "a bus", "zidane": "a person", "chelsea": "a cat", "coffee": "a cup of coffee",
             "motorcycle": "a motorcycle"}
    right = 0
    for name, label in truth.items():
        data_url = "data:image/png;base64," + base64.b64encode(photo_bytes[name]).decode()
        probs = post(client, "/image-classification", {"image": data_url, "labels": labels, "model": "english"})[
            "probabilities"]
        assert set(probs) == set(labels) and sum(probs.values()) == pytest.approx(1, abs=1e-3)
        right += max(probs, key=probs.get) == label
    assert right >= 4, right  # measured 5 of 5 (and the astronaut, with no "astronaut" among ImageNet's classes, wrong)
    raw = post(client, "/image-classification", {"image": base64.b64encode(photo_bytes["chelsea"]).decode(),
                                                  "labels": ["a cat", "a dog"]})  # no data: prefix
    assert raw["probabilities"]["a cat"] > 0.5 and raw["model"].startswith("mobilenet-v2 + minilm-l6: zero-shot")


def test_bad_bodies_get_a_message(client: TestClient, photo_bytes: dict[str, bytes]) -> None:
    cases = [
        ("/text-vectorisation", {"txt": "x"}, 400, "unknown field"),
        ("/text-vectorisation", {"text": 5}, 400, "invalid request"),
        ("/text-vectorisation", {"text": []}, 400, "empty list"),
        ("/text-vectorisation", {"text": "  "}, 400, "must not be empty"),
        ("/text-vectorisation", {"text": ["a"] * 65}, 400, "at most 64"),
        ("/text-vectorisation", {"text": "x", "model": "nosuch"}, 404, "model nosuch not found"),
        ("/text-classification", {"text": "x", "labels": ["only one"]}, 400, "at least two labels"),
        ("/text-classification", {"text": ["x", "y"], "labels": ["a", "b"]}, 400, "one list of labels per text"),
        ("/text-classification", {"text": "x", "labels": [["a", "b"]]}, 400, "list of strings"),
        ("/text-classification", {"text": "x", "labels": ["a", "a"]}, 400, "distinct"),
        ("/image-classification", {"image": "%%%", "labels": ["a", "b"]}, 400, "not base64"),
        ("/image-classification", {"image": base64.b64encode(b"not an image").decode(), "labels": ["a", "b"]}, 400,
         "not an image"),
    ]
    for route, body, status, words in cases:
        response = client.post(f"/backprop{route}", json=body)
        message = response.json()
        assert response.status_code == status and set(message) == {"message"}, (route, body, response.text)
        assert words in message["message"], (words, message)
    assert client.post("/backprop/text-vectorisation", content=b"{not json", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert post(client, "/text-vectorisation", {"text": "still serving"})["vector"]


@pytest.mark.slow
def test_emotion_single_and_batch_as_the_spec_answers(client: TestClient, cache_dir: Path) -> None:
    single = post(client, "/emotion", {"text": "I hope this works", "model": "english"})
    assert set(single) == {"output", "model"} and single["output"]
    six = {"joy", "fear", "anger", "sadness", "love", "surprise"}
    assert set(single["output"].split(", ")) <= six and "not the 28 of GoEmotions" in single["model"]
    batch = post(client, "/emotion", {"text": ["I hope this works", "I'll be most upset if things go wrong"]})
    assert len(batch["output"]) == 2 and batch["output"][0] == single["output"]
    # review sentences: the emotions of positive reviews are joy or love far more often than those of negative ones
    rows = [(t, y) for t, y in labelled_sentences(cache_dir, "yelp")][::4][:200]
    outputs = []
    for start in range(0, len(rows), 50):
        outputs += post(client, "/emotion", {"text": [t for t, _ in rows[start:start + 50]]})["output"]
    happy = [o.split(", ")[0] in ("joy", "love") for o in outputs]
    positive = [y == 1 for _, y in rows]
    agree = float(np.mean([h == p for h, p in zip(happy, positive)]))
    assert agree >= 0.58, agree  # measured 0.66 on all 3,000 review sentences (chance 0.5)
    wrong = client.post("/backprop/emotion", json={"text": "x", "model": "gpt2-large"})
    assert wrong.status_code == 404 and wrong.json() == {"message": "model gpt2-large not found"}


def _zip(files: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_models_upload_url_and_a_pickle_that_is_never_loaded(client: TestClient, tmp_path: Path) -> None:
    import pickle

    listed = client.get("/backprop/models").json()
    assert {m["name"] for m in listed} >= {"english", "english-image", "english-emotion"}
    assert all(m["build_status"] == "success" for m in listed)
    assert client.get("/backprop/models", params={"include_global": "false"}).json() == []
    for bad in ("ab", "Upper", "has space", "x" * 101):
        refused = client.post("/backprop/upload-url", json={"model_name": bad})
        assert refused.status_code == 400 and "3-100 characters" in refused.json()["message"]
    url = client.post("/backprop/upload-url", json={"model_name": "my-model"}).json()
    assert url.startswith("http") and "/backprop/uploads/" in url
    path = url.split("://", 1)[1].split("/", 1)[1]
    marker = tmp_path / "pwned"

    class Evil:  # what an attacker's model.bin would do when unpickled
        def __reduce__(self):
            return (marker.write_text, ("unpickled",))

    config = json.dumps({"description": "my QA model", "task": ["qa"]}).encode()
    wrong = client.put(f"/{path}", content=_zip({"model.bin": b"x", "config.json": config}), headers={"x-api-key": ""})
    assert wrong.status_code == 400 and "exactly model.bin, config.json, requirements.txt" in wrong.json()["message"]
    url = client.post("/backprop/upload-url", json={"model_name": "my-model"}).json()  # a URL serves one upload
    path = url.split("://", 1)[1].split("/", 1)[1]
    upload = _zip({"model.bin": pickle.dumps(Evil()), "config.json": config, "requirements.txt": b"dill\n"})
    stored = client.put(f"/{path}", content=upload, headers={"x-api-key": ""})  # the URL's token authorises it
    assert stored.status_code == 200, stored.text
    info = stored.json()
    assert info["build_status"] == "fail" and "never unpickles" in info["build_message"] and not marker.exists()
    assert client.put(f"/{path}", content=upload).status_code == 404  # used once
    assert client.get("/backprop/models/my-model").json()["tasks"] == ["qa"]
    assert [m["name"] for m in client.get("/backprop/models", params={"include_global": "false"}).json()] == ["my-model"]
    missing = client.get("/backprop/models/nope")
    assert missing.status_code == 404 and missing.json() == "model nope not found"
    try:  # a zip over max_upload_bytes is cut off while it streams, and nothing of it is left
        assert client.post(f"/v1/settings/{MODULE}", json={"max_upload_bytes": 2048}).status_code == 200
        url = client.post("/backprop/upload-url", json={"model_name": "too-big"}).json()
        big = client.put("/" + url.split("://", 1)[1].split("/", 1)[1], content=b"x" * 200_000)
        assert big.status_code == 413 and "max_upload_bytes" in big.json()["message"]
        folder = client.app.state.services.config.data_dir / "task_models"
        assert not list(folder.glob(".incoming-*")) and not (folder / "too-big").exists()
    finally:
        client.post(f"/v1/settings/{MODULE}", json={"max_upload_bytes": 4 * 1024 ** 3})
    deleted = client.delete("/backprop/models/my-model")
    assert deleted.status_code == 200 and deleted.json() is None
    assert client.delete("/backprop/models/my-model").status_code == 404


GERALT = {"text": "Geralt knew the signs, the monster was a", "min_length": 10, "max_length": 20, "temperature": 1,
          "top_k": 0, "top_p": 1, "repetition_penalty": 1, "length_penalty": 1, "num_beams": 1, "num_generations": 1,
          "model": "gpt2-large"}


def sse(client: TestClient, body: dict) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed generation, as (event, data)."""
    events, kind = [], None
    with client.stream("POST", "/backprop/text-generation", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    return events


@pytest.mark.slow
def test_text_generation_blocking_batch_and_streamed(client: TestClient) -> None:
    first = post(client, "/text-generation", GERALT)
    assert set(first) == {"output", "model"} and first["model"] == "smollm2-135m"
    assert first["output"].startswith(GERALT["text"]) and len(first["output"]) > len(GERALT["text"]) + 10
    greedy = {"text": "The three primary colours are", "max_length": 12, "temperature": 0}
    once, again = post(client, "/text-generation", greedy), post(client, "/text-generation", greedy)
    assert once == again  # temperature 0: the same answer every time
    two = post(client, "/text-generation", {"text": ["The year was", "My favourite food is"], "max_length": 8,
                                            "num_generations": 2})["output"]
    assert [len(o) for o in two] == [2, 2] and two[0][0].startswith("The year was") and two[0][0] != two[0][1]
    events = sse(client, {**greedy, "stream": True})
    tokens = [e for kind, e in events if kind == "token"]
    (done,) = [e for kind, e in events if kind == "done"]
    assert events[-1][0] == "done" and len(tokens) >= 2
    assert done["output"] == greedy["text"] + "".join(t["text"] for t in tokens) == once["output"]
    assert 1 <= done["completion_tokens"] <= 12 and done["finish_reason"] in ("length", "stop")


@pytest.mark.slow
def test_generation_parameters_are_checked(client: TestClient) -> None:
    cases = [({"num_beams": 4}, "beam search is not available"), ({"length_penalty": 2}, "beam search"),
             ({"top_p": 0}, "top_p must be more than 0"), ({"top_p": 1.5}, "top_p must be"),
             ({"max_length": 0}, "max_length must be at least 1"), ({"max_length": 5000}, "at most 256"),
             ({"max_length": 5, "min_length": 6}, "min_length must be"), ({"temperature": -1}, "temperature"),
             ({"top_k": 1.5}, "top_k"), ({"num_generations": 9}, "num_generations"),
             ({"repetition_penalty": 0}, "repetition_penalty"), ({"model": "gpt-5"}, "model gpt-5 not found"),
             ({"stream": True, "num_generations": 2}, "one generation")]
    for extra, words in cases:
        response = client.post("/backprop/text-generation", json={"text": "Hello", **extra})
        assert response.status_code in (400, 404) and words in response.json()["message"], (extra, response.text)
    listed = client.post("/backprop/text-generation", json={"text": ["a", "b"], "stream": True})
    assert listed.status_code == 400 and "one text" in listed.json()["message"]


@pytest.mark.slow
def test_summaries_are_extractive_and_qa_is_off_until_asked(client: TestClient, cache_dir: Path) -> None:
    reviews = [t for t, _ in labelled_sentences(cache_dir, "yelp")][:12]
    text = " ".join(r if r.endswith((".", "!", "?")) else r + "." for r in reviews)
    summary = post(client, "/summarisation", {"text": text, "model": "english"})
    from edgewatch.models.runtime.text import split_sentences

    chosen = split_sentences(summary["output"])  # three of the text's own sentences, as written, in order
    sentences = split_sentences(text)
    assert len(chosen) == 3 and all(c in sentences for c in chosen) and "extractive" in summary["model"]
    assert [sentences.index(c) for c in chosen] == sorted(sentences.index(c) for c in chosen)
    batch = post(client, "/summarisation", {"text": [text, "One sentence only."]})["output"]
    assert batch == [summary["output"], "One sentence only."]
    body = {"question": "What is the meaning of life?", "context": "The meaning of life is 42.",
            "prev_q": ["What is not the meaning of life?"], "prev_a": ["unknown"], "model": "english"}
    off = client.post("/backprop/qa", json=body)
    assert off.status_code == 501 and "task_api.qa: generative" in off.json()["message"]
    settings = f"/v1/settings/{MODULE}"
    try:
        assert client.post(settings, json={"qa": "generative"}).status_code == 200
        answered = post(client, "/qa", body)
        assert isinstance(answered["answer"], str) and answered["answer"] and "small instruct" in answered["model"]
        both = post(client, "/qa", {"question": ["Where does Sally live?", "What is the meaning of life?"],
                                    "context": ["Sally lives in London", "The meaning of life is 42."],
                                    "prev_q": [["Where did Sally go to school?"], []], "prev_a": [["unknown"], []]})
        assert len(both["answer"]) == 2
        unpaired = client.post("/backprop/qa", json={**body, "prev_a": []})
        assert unpaired.status_code == 400 and "pair up" in unpaired.json()["message"]
    finally:
        client.post(settings, json={"qa": "off"})


@pytest.mark.slow
def test_multilingual_vectors_and_classification(client: TestClient, cache_dir: Path) -> None:
    from edgewatch.models.runtime.multilingual import engine_problem

    problem = engine_problem()
    if problem is not None:  # e.g. 32-bit ARM or an x86 CPU without AVX2: the model cannot run there at all
        refused = client.post("/backprop/text-vectorisation", json={"text": "x", "model": "multilingual"})
        assert refused.status_code == 503 and "use model english" in refused.json()["message"]
        pytest.skip(problem)
    install("multilingual-e5-small", client.app.state.services.store, cache_dir)
    same = ["The camera saw a person at the door.", "La caméra a vu une personne à la porte.",
            "Die Kamera hat eine Person an der Tür gesehen.", "Il tempo oggi è molto bello."]
    vectors = np.array(post(client, "/text-vectorisation", {"text": same, "model": "multilingual"})["vectorList"])
    sims = vectors @ vectors.T
    assert min(sims[0, 1], sims[0, 2], sims[1, 2]) > max(sims[0, 3], sims[1, 3], sims[2, 3])
    probs = post(client, "/text-classification", {"text": "Der Akku meines Handys ist kaputt.",
                                                  "labels": ["product issue", "weather", "sport"],
                                                  "model": "multilingual"})["probabilities"]
    assert max(probs, key=probs.get) == "product issue"


@pytest.mark.slow
def test_an_uploaded_gguf_is_installed_and_answers_by_its_name(client: TestClient, cache_dir: Path) -> None:
    """A zip whose model.bin is a GGUF language model (here the store's own SmolLM2 file, re-uploaded)
    is installed after llama.cpp ran it, answers /text-generation under its name, and is deleted with
    the upload."""
    store = client.app.state.services.store
    gguf = store.path(store.get("smollm2-135m")).read_bytes()
    config = json.dumps({"description": "my own small model", "task": ["text-generation", "qa"]}).encode()
    url = client.post("/backprop/upload-url", json={"model_name": "my-llm"}).json()
    path = url.split("://", 1)[1].split("/", 1)[1]
    info = client.put(f"/{path}", content=_zip({"model.bin": gguf, "config.json": config,
                                                "requirements.txt": b""})).json()
    assert info["build_status"] == "success" and "tokens/s here" in info["build_message"], info
    assert store.get("my-llm").task == "text_generation" and store.get("my-llm").source.registry == "local"
    greedy = {"text": "The three primary colours are", "max_length": 8, "temperature": 0}
    mine = post(client, "/text-generation", {**greedy, "model": "my-llm"})
    assert mine["model"] == "my-llm" and mine["output"] == post(client, "/text-generation", greedy)["output"]
    answered = post(client, "/qa", {"question": "Where does Sally live?", "context": "Sally lives in London.",
                                    "model": "my-llm"})  # qa is off for the bundled model, not for one asked by name
    assert answered["model"].startswith("my-llm: your uploaded") and answered["answer"]
    bad = client.post("/backprop/upload-url", json={"model_name": "smollm2-135m"}).json()
    clash = client.put("/" + bad.split("://", 1)[1].split("/", 1)[1],
                       content=_zip({"model.bin": gguf, "config.json": config, "requirements.txt": b""})).json()
    assert clash["build_status"] == "fail" and "installed from the catalogue" in clash["build_message"]
    assert store.has("smollm2-135m")
    assert client.delete("/backprop/models/my-llm").status_code == 200 and not store.has("my-llm")
    gone = client.post("/backprop/text-generation", json={**greedy, "model": "my-llm"})
    assert gone.status_code == 404 and gone.json()["message"] == "model my-llm not found"
