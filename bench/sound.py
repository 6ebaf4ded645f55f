"""Sound benchmark: /v1/sound/classify end to end against YAMNet's raw inference time.

    python bench/sound.py [--rounds 20]

Installs yamnet (accepting its licence) into a temporary data dir, fetches two real recordings from
Debian's lincity-ng-data (a 4 s siren, and 30 s cut from a music track), and times, interleaved:
the whole request through the daemon's app (multipart parsing, WAV decoding, resampling, log-mel,
inference, mapping, JSON), and the raw inference alone (the backend run on every patch of the clip).
Prints p50s and their ratio.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf
from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.modules.sound.audio import decode_wav
from edgewatch.daemon.modules.sound.features import patches
from edgewatch.daemon.paths import default_cache_dir
from edgewatch.models.evalset import extract_deb_verified, fetch_deb
from edgewatch.models.installer import install
from edgewatch.models.store import ModelStore
from litestar.testing import TestClient

LINCITY = "usr/share/games/lincity-ng/"
FILES = {
    LINCITY + "sounds/Health4.wav": "4e7b20705ef3ddeae48a952cc020ae73f073079c701e6d94e397c90761528933",
    LINCITY + "music/default/01 - pronobozo - lincity.ogg": "5ae2f878032f2ce77565bc9c4f27db133b510312aad331d15d1a2a309df9d3a4",
}


def clips(cache: Path) -> dict[str, bytes]:
    got = extract_deb_verified(fetch_deb("lincity-ng-data", "2.9~git20150314-5", cache), FILES,
                               cache / "extracted" / "lincity-ng-data")
    music, rate = sf.read(got[LINCITY + "music/default/01 - pronobozo - lincity.ogg"], dtype="float32",
                          start=30 * 44100, frames=30 * 44100)
    out = io.BytesIO()
    sf.write(out, music, rate, format="WAV", subtype="PCM_16")
    return {"siren 4 s, 22 kHz": got[LINCITY + "sounds/Health4.wav"].read_bytes(), "music 30 s, 44.1 kHz stereo": out.getvalue()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    cache = default_cache_dir()
    recordings = clips(cache)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        install("yamnet", ModelStore(data / "models"), cache, accept_licences=["LicenseRef-Qualcomm-AI-Hub-Proprietary"])
        with TestClient(create_app(load_settings(data_dir=data, cache_dir=cache))) as client:
            model = client.app.state.services.modules["SoundClassifierEdgewatch"].model()
            for name, wav in recordings.items():
                feats = patches(decode_wav(wav, 30.0).samples)
                request, raw = [], []
                for _ in range(args.rounds):
                    start = time.perf_counter()
                    body = client.post("/v1/sound/classify", files={"sound": ("clip.wav", wav, "audio/wav")}).json()
                    request.append((time.perf_counter() - start) * 1000)
                    start = time.perf_counter()
                    model.scores(feats)
                    raw.append((time.perf_counter() - start) * 1000)
                req, inf = statistics.median(request), statistics.median(raw)
                print(f"{name:28s} {len(feats):3d} patches  request p50 {req:6.1f} ms  raw inference p50 {inf:6.1f} ms  "
                      f"ratio {req / inf:4.2f}  → {body['label']} ({body['audioSetLabel']})")


if __name__ == "__main__":
    main()
