"""YAMNet's input: log-mel patches of a 16 kHz waveform, as its published feature code makes them
(tensorflow/models research/audioset/yamnet, features.py and params.py): 25 ms periodic-Hann
windows every 10 ms, 512-point FFT magnitudes, 64 HTK mel bands from 125 to 7500 Hz,
log(mel + 0.001), patches of 96 frames (0.96 s) every 48 frames (0.48 s)."""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16_000
WINDOW, HOP, FFT = 400, 160, 512     # samples: 25 ms, 10 ms
MEL_BANDS, MEL_MIN_HZ, MEL_MAX_HZ = 64, 125.0, 7500.0
LOG_OFFSET = 0.001
PATCH_FRAMES, PATCH_HOP_FRAMES = 96, 48


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


@cache
def mel_matrix() -> np.ndarray:
    """(FFT/2+1) × 64 weights, as tf.signal.linear_to_mel_weight_matrix builds them: triangles in the
    mel domain over the bins' mel frequencies, the DC bin left out."""
    bins_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1))[1:, None]
    edges = np.linspace(_hz_to_mel(MEL_MIN_HZ), _hz_to_mel(MEL_MAX_HZ), MEL_BANDS + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((bins_mel - lower) / (centre - lower), (upper - bins_mel) / (upper - centre)))
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def _padded(samples: np.ndarray) -> np.ndarray:
    """Zero-padded so that there is one whole patch and the last hop's patch is whole (YAMNet's pad_waveform)."""
    min_samples = PATCH_FRAMES * HOP + WINDOW - HOP
    after_first = max(len(samples), min_samples) - min_samples
    hop = PATCH_HOP_FRAMES * HOP
    target = min_samples + -(-after_first // hop) * hop
    return np.pad(samples, (0, target - len(samples)))


def log_mel(samples: np.ndarray) -> np.ndarray:
    """frames × 64 log-mel of ``samples`` (16 kHz, at least one window long)."""
    count = 1 + (len(samples) - WINDOW) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(samples, WINDOW)[::HOP][:count]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)
    magnitude = np.abs(np.fft.rfft(frames * window, FFT)).astype(np.float32)
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET)


def patches(samples: np.ndarray) -> np.ndarray:
    """N × 1 × 96 × 64 float32 patches of a 16 kHz mono waveform, every 0.48 s."""
    features = log_mel(_padded(samples))
    starts = range(0, features.shape[0] - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
    return np.stack([features[s:s + PATCH_FRAMES] for s in starts])[:, None].astype(np.float32)
