#!/usr/bin/env python3
"""Golden outputs for tests/test_augment.cpp from librosa 0.11 (raw little-endian float32 files).

  signal.f32            (16384,) test signal: harmonic tone with vibrato + a click train + noise
  pv_in.f32             (frames, bins, 2) librosa.stft(signal[:4096], n_fft=512, hop_length=128) (frames first)
  pv_rate{R}.f32        (frames_out, bins, 2) librosa.phase_vocoder(pv_in, rate=R, hop_length=128, n_fft=512)
  stretch_rate{R}.f32   librosa.effects.time_stretch(signal, rate=R) (n_fft 2048, hop 512)
  pitch_{N}.f32         librosa.effects.pitch_shift(signal, sr=22050, n_steps=N)
  short_pitch_{N}.f32   librosa.effects.pitch_shift(signal[:1500], sr=22050, n_steps=N) (shorter than n_fft)
  short_stretch.f32     librosa.effects.time_stretch(signal[:1500], rate=1.25)
  meta.json             shapes and parameters

Usage: augment_golden.py OUT_DIR   (the committed copy lives in tests/data/golden/augment/)
"""
import json
import os
import sys

import librosa
import numpy as np

SR = 22050
N = 16384
PV_N = 4096  # samples the phase-vocoder golden uses
PV_RATES = [0.8, 1.5]
STRETCH_RATES = [0.8, 1.25]
PITCH_STEPS = [-4, 3, 12]
SHORT_N = 1500  # shorter than n_fft = 2048
SHORT_STEPS = [-24, 7, 24]


def test_signal():
    t = np.arange(N) / SR
    f0 = 220.0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(0.3 / k * np.sin(k * phase) for k in range(1, 8))
    clicks = np.zeros(N)
    clicks[::2000] = 0.5
    rng = np.random.RandomState(0)
    return (y + clicks + 0.01 * rng.randn(N)).astype(np.float32)


def save(path, a):
    np.ascontiguousarray(a, dtype="<f4").tofile(path)


def complex_frames_first(d):
    """(bins, frames) complex → (frames, bins, 2) float32."""
    d = d.T
    return np.stack([d.real, d.imag], axis=-1).astype(np.float32)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    y = test_signal()
    save(os.path.join(out, "signal.f32"), y)
    meta = {"sr": SR, "n": N, "pv": {"n_fft": 512, "hop": 128}, "pv_rates": PV_RATES,
            "stretch_rates": STRETCH_RATES, "pitch_steps": PITCH_STEPS, "librosa": librosa.__version__}
    # Phase vocoder alone, on complex64 values (what our float pipeline holds) promoted to
    # complex128 so librosa accumulates the phase in double precision, as ours does.
    d = librosa.stft(y[:PV_N], n_fft=512, hop_length=128).astype(np.complex64)
    save(os.path.join(out, "pv_in.f32"), complex_frames_first(d))
    meta["pv_frames"] = int(d.shape[1])
    for r in PV_RATES:
        s = librosa.phase_vocoder(d.astype(np.complex128), rate=r, hop_length=128, n_fft=512)
        save(os.path.join(out, f"pv_rate{r}.f32"), complex_frames_first(s))
        meta[f"pv_rate{r}_frames"] = int(s.shape[1])
    y64 = y.astype(np.float64)
    for r in STRETCH_RATES:
        s = librosa.effects.time_stretch(y64, rate=r)
        save(os.path.join(out, f"stretch_rate{r}.f32"), s)
        meta[f"stretch_rate{r}_len"] = int(s.shape[0])
    for n in PITCH_STEPS:
        s = librosa.effects.pitch_shift(y64, sr=SR, n_steps=n)
        save(os.path.join(out, f"pitch_{n}.f32"), s)
    short = y64[:SHORT_N]
    for n in SHORT_STEPS:
        save(os.path.join(out, f"short_pitch_{n}.f32"), librosa.effects.pitch_shift(short, sr=SR, n_steps=n))
    save(os.path.join(out, "short_stretch.f32"), librosa.effects.time_stretch(short, rate=1.25))
    meta["short_n"] = SHORT_N
    meta["short_steps"] = SHORT_STEPS
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
