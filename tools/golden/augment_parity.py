#!/usr/bin/env python3
"""Live parity of our pitch shift / time stretch with librosa 0.11 on the same input.

usage: augment_parity.py IN.wav KIND:VALUE:OURS.wav ...   (KIND: pitch_shift | time_stretch)

For each item, runs librosa.effects.pitch_shift(y, sr, n_steps=VALUE) or
librosa.effects.time_stretch(y, rate=VALUE) on IN.wav, computes the log-mel of both
(librosa.feature.melspectrogram, n_fft 2048, hop 512, 128 mels; power_to_db relative to the
maximum of librosa's mel) and prints one JSON line: the mean absolute dB difference over the
cells of librosa's log-mel above -60 dB, and the lag in [-256, 256] samples at which our waveform
best matches librosa's (argmax over lag of sum ours[i + lag] * librosa[i]; 0 when aligned).
"""
import json
import sys

import librosa
import numpy as np
import soundfile as sf


def log_mel(y, sr, ref):
    m = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
    return librosa.power_to_db(m, ref=ref, amin=1e-10, top_db=None)


def best_lag(ours, ref, max_lag=256):
    n = len(ref)
    best, best_c = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        a = ours[max(0, lag):n + min(0, lag)].astype(np.float64)
        b = ref[max(0, -lag):n - max(0, lag)].astype(np.float64)
        c = float(np.dot(a, b))
        if c > best_c:
            best, best_c = lag, c
    return best


def main():
    y, sr = sf.read(sys.argv[1], dtype="float32")
    for item in sys.argv[2:]:
        kind, value, path = item.split(":", 2)
        value = float(value)
        if kind == "pitch_shift":
            ref = librosa.effects.pitch_shift(y, sr=sr, n_steps=value)
        elif kind == "time_stretch":
            ref = librosa.effects.time_stretch(y, rate=value)
        else:
            raise SystemExit(f"unknown kind {kind}")
        ours, sr2 = sf.read(path, dtype="float32")
        if sr2 != sr or ours.shape != ref.shape:
            raise SystemExit(f"{path}: shape {ours.shape} at {sr2} Hz, librosa {ref.shape} at {sr} Hz")
        mref = librosa.feature.melspectrogram(y=ref, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        peak = float(mref.max())
        a, b = log_mel(ours, sr, peak), log_mel(ref, sr, peak)
        mask = b > -60.0
        err = float(np.mean(np.abs(a[mask] - b[mask])))
        print(json.dumps({"kind": kind, "value": value, "mean_abs_db": err, "cells": int(mask.sum()),
                          "lag": best_lag(ours, ref),
                          "max_abs_waveform_diff": float(np.max(np.abs(ours - ref)))}))


if __name__ == "__main__":
    main()
