"""WAV bytes → 16 kHz mono float samples, as YAMNet hears them; what a sender can fix raises the
module errors (not a WAV, no samples, silent, too long)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf

from edgewatch.daemon.modules.errors import BadRequest, RequestError, TooLarge

SAMPLE_RATE = 16_000
WAV_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64"})  # libsndfile's names for RIFF/WAVE files
MIN_RATE = 8_000      # YAMNet's mel bands reach 7.5 kHz; below this most of them are empty
SILENT_PEAK = 1e-4    # -80 dBFS: nothing a microphone picked up
CONVERT = "e.g. `ffmpeg -i INPUT -ac 1 -ar 16000 sound.wav`"


class UnsupportedMedia(RequestError):
    status = 415


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray   # float32, 16 kHz mono, -1..1
    seconds: float        # the recording's length as sent


def decode_wav(data: bytes, max_seconds: float) -> Clip:
    """The recording in ``data`` at 16 kHz mono; refuses anything but a non-empty, audible WAV of at
    most ``max_seconds`` (its length is read from the header before any sample is)."""
    if not data:
        raise BadRequest(f"the 'sound' part is empty: send a WAV recording ({CONVERT})")
    try:
        with sf.SoundFile(io.BytesIO(data)) as wav:
            if wav.format not in WAV_FORMATS:
                raise UnsupportedMedia(f"the sound is {sf.available_formats().get(wav.format, wav.format)}, not WAV: "
                                       f"convert it to WAV first ({CONVERT})")
            rate, frames = wav.samplerate, wav.frames
            if frames <= 0:
                raise BadRequest("the WAV has no samples: send a recording of the sound to classify")
            if frames / rate > max_seconds:
                raise TooLarge(f"the recording is {frames / rate:.1f} s long; at most {max_seconds:g} s is classified: "
                               f"send a shorter clip (e.g. `ffmpeg -i INPUT -t {max_seconds:g} sound.wav`) or raise "
                               "max_seconds in /v1/settings/SoundClassifierEdgewatch")
            if rate < MIN_RATE:
                raise BadRequest(f"the WAV is sampled at {rate} Hz; at least {MIN_RATE} Hz is needed (16000 is best)")
            samples = wav.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise UnsupportedMedia(f"the 'sound' part is not a WAV file ({exc.error_string}): send a WAV recording "
                               f"({CONVERT})") from None
    if samples.shape[0] == 0:
        raise BadRequest("the WAV has no samples: send a recording of the sound to classify")
    channels = samples.shape[1]  # a matrix product: numpy's mean over a short axis is 10x slower
    mono = samples @ np.full(channels, 1.0 / channels, np.float32)
    peak = float(np.abs(mono).max())
    if peak < SILENT_PEAK:
        raise BadRequest(f"the recording is silent (peak {_dbfs(peak)}): check the microphone and its level, "
                         "then record again")
    if rate != SAMPLE_RATE:
        from scipy.signal import resample_poly  # at the first clip to resample: importing scipy.signal takes seconds

        g = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return Clip(np.ascontiguousarray(mono, dtype=np.float32), samples.shape[0] / rate)


def _dbfs(peak: float) -> str:
    return "-inf dBFS" if peak <= 0 else f"{20 * np.log10(peak):.0f} dBFS"
