#!/usr/bin/env python3
"""Reference mel spectrograms from librosa for tests/test_mel.cpp.

Writes tests/data/golden/mel/: cases.json (every case: its signal or clip excerpt, its librosa
parameters, its output file) and one float32 .npy per case, plus librosa.filters.mel matrices
stored sparsely as (nnz, 3) rows of (mel, bin, weight). Synthetic signals are described by a
recipe that the C++ test rebuilds sample for sample (see synth() here and in the test); real
clips are 3-second excerpts of gtzan-mini, decoded with soundfile as librosa.load does.

usage: make_mel_golden.py [--audio ../shared/data/gtzan-mini] [--out tests/data/golden/mel]
       make_mel_golden.py --live CLIP.flac OUT.npy [--params JSON]   (one librosa mel, for live tests)
"""
import argparse
import json
import os
import sys

import numpy as np

SR = 22050
EXCERPT_START = 5 * SR  # skip the first seconds of each clip
EXCERPT_LEN = 3 * SR


def synth(components, n):
    """Sum of components in float64, rounded to float32 once (mirrored in tests/test_mel.cpp)."""
    t = np.arange(n, dtype=np.float64)
    y = np.zeros(n, dtype=np.float64)
    for c in components:
        kind = c["type"]
        if kind == "sine":
            y += c["amp"] * np.sin(2.0 * np.pi * c["freq"] * t / SR + c.get("phase", 0.0))
        elif kind == "chirp":  # linear sweep f0 -> f1 over the signal
            dur = n / SR
            s = t / SR
            y += c["amp"] * np.sin(2.0 * np.pi * (c["f0"] * s + (c["f1"] - c["f0"]) / (2.0 * dur) * s * s))
        elif kind == "square":  # +amp for `half` samples, then -amp
            half = c["half"]
            y += np.where((np.arange(n) // half) % 2 == 0, c["amp"], -c["amp"])
        elif kind == "dc":
            y += c["value"]
        elif kind == "noise":  # 32-bit LCG, top 24 bits -> uniform [-1, 1)
            state = c["seed"] & 0xFFFFFFFF
            v = np.empty(n, dtype=np.float64)
            for i in range(n):
                state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
                v[i] = (state >> 8) / 16777216.0 * 2.0 - 1.0
            y += c["amp"] * v
        elif kind == "silence":
            pass
        else:
            raise ValueError(kind)
    return y.astype(np.float32)


BASE = dict(n_fft=1024, hop_length=512, n_mels=128, power=2.0, center=True, pad_mode="reflect",
            htk=False, norm="slaney", fmin=0.0, fmax=None, win_length=None,
            db=False, ref=1.0, amin=1e-10, top_db=80.0)


def params(**kw):
    p = dict(BASE)
    p.update(kw)
    return p


def librosa_mel(y, p):
    import librosa
    norm = "slaney" if p["norm"] == "slaney" else None
    m = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=p["n_fft"], hop_length=p["hop_length"], win_length=p["win_length"],
        window="hann", center=p["center"], pad_mode=p["pad_mode"], power=p["power"],
        n_mels=p["n_mels"], fmin=p["fmin"], fmax=p["fmax"], htk=p["htk"], norm=norm)
    if p["db"]:
        ref = np.max if p["ref"] == "max" else p["ref"]
        m = librosa.power_to_db(m, ref=ref, amin=p["amin"], top_db=p["top_db"])
    return m.astype(np.float32)


CLIPS = ["classical/classical.00001.flac", "metal/metal.00002.flac"]

CLIP_SETTINGS = {
    "baseline": params(),
    "n2048_reflect_htk_64": params(n_fft=2048, n_mels=64, htk=True),
    "n2048_constant_80": params(n_fft=2048, n_mels=80, pad_mode="constant"),
    "n2048_constant_htk_80_nonorm_band": params(n_fft=2048, n_mels=80, pad_mode="constant", htk=True,
                                                 norm="none", fmin=30.0, fmax=8000.0),
    "db_refmax_top80": params(db=True, ref="max", top_db=80.0),
    "n2048_power1_db_ref1_notop_64": params(n_fft=2048, n_mels=64, power=1.0, db=True, ref=1.0, top_db=None),
}

NOISE = {"type": "noise", "seed": 12345, "amp": 0.5}
SYNTH = [
    # name, signal components, length, parameters
    ("noise_shorter_than_nfft", [NOISE], 700, params()),
    ("noise_shorter_than_half_nfft_reflect", [{"type": "noise", "seed": 7, "amp": 0.9}], 300, params()),
    ("noise_shorter_than_half_nfft_constant", [{"type": "noise", "seed": 7, "amp": 0.9}], 300,
     params(pad_mode="constant")),
    ("chirp_odd_length_80", [{"type": "chirp", "f0": 50.0, "f1": 9000.0, "amp": 0.8}], 5001,
     params(hop_length=256, n_mels=80)),
    ("mix_nfft1000_win800_80", [{"type": "sine", "freq": 440.0, "amp": 0.5},
                                {"type": "sine", "freq": 3520.0, "amp": 0.25, "phase": 0.3},
                                {"type": "noise", "seed": 99, "amp": 0.01}], 6000,
     params(n_fft=1000, hop_length=250, win_length=800, n_mels=80)),
    ("sine_nfft999_odd_hop333", [{"type": "sine", "freq": 1000.0, "amp": 0.7}], 4444,
     params(n_fft=999, hop_length=333, n_mels=40)),
    ("silence", [{"type": "silence"}], 4096, params()),
    ("silence_db_refmax", [{"type": "silence"}], 4096, params(db=True, ref="max")),
    ("dc", [{"type": "dc", "value": 0.5}], 8192, params()),
    ("square_full_scale", [{"type": "square", "half": 25, "amp": 1.0}], 8192, params()),
    ("square_full_scale_db", [{"type": "square", "half": 25, "amp": 1.0}], 8192, params(db=True, ref="max")),
    ("noise_uncentered", [NOISE], 5000, params(center=False)),
    ("sine_power1_htk_band", [{"type": "sine", "freq": 2000.0, "amp": 0.3}, NOISE], 4000,
     params(power=1.0, htk=True, fmin=100.0, fmax=6000.0, n_mels=64)),
    # Same length as each other: the test also runs these three as one batch.
    ("batch_a_sine", [{"type": "sine", "freq": 220.0, "amp": 0.9}], 3000, params(n_mels=80)),
    ("batch_b_noise", [{"type": "noise", "seed": 3, "amp": 0.2}], 3000, params(n_mels=80)),
    ("batch_c_chirp", [{"type": "chirp", "f0": 100.0, "f1": 5000.0, "amp": 0.5}], 3000, params(n_mels=80)),
]

FILTERBANKS = [
    dict(name="fb_baseline", sr=22050, n_fft=1024, n_mels=128, fmin=0.0, fmax=None, htk=False, norm="slaney"),
    dict(name="fb_htk_64_2048", sr=22050, n_fft=2048, n_mels=64, fmin=0.0, fmax=None, htk=True, norm="slaney"),
    dict(name="fb_slaney_80_nonorm", sr=22050, n_fft=2048, n_mels=80, fmin=0.0, fmax=None, htk=False, norm="none"),
    dict(name="fb_16k_htk_40_band", sr=16000, n_fft=512, n_mels=40, fmin=50.0, fmax=7000.0, htk=True, norm="none"),
    dict(name="fb_nfft1000_80_band", sr=22050, n_fft=1000, n_mels=80, fmin=20.0, fmax=8000.0, htk=False,
         norm="slaney"),
    dict(name="fb_too_many_mels", sr=8000, n_fft=256, n_mels=128, fmin=0.0, fmax=None, htk=False, norm="slaney"),
]


def load_excerpt(path):
    import soundfile as sf
    y, sr = sf.read(path, dtype="float32")
    assert sr == SR and y.ndim == 1, (path, sr, y.shape)
    return y[EXCERPT_START:EXCERPT_START + EXCERPT_LEN]


def main_golden(args):
    import librosa
    import warnings
    os.makedirs(args.out, exist_ok=True)
    cases = []
    for clip in CLIPS:
        y = load_excerpt(os.path.join(args.audio, "genres", clip))
        stem = os.path.basename(clip).rsplit(".", 1)[0].replace(".", "_")
        for name, p in CLIP_SETTINGS.items():
            file = f"clip_{stem}_{name}.npy"
            np.save(os.path.join(args.out, file), librosa_mel(y, p))
            cases.append(dict(name=f"{stem}_{name}", clip=clip, start=EXCERPT_START, length=EXCERPT_LEN,
                              checksum=float(np.sum(y.astype(np.float64))), params=p, file=file))
    for name, comps, n, p in SYNTH:
        y = synth(comps, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n_fft larger than the signal: intended
            m = librosa_mel(y, p)
        file = f"synth_{name}.npy"
        np.save(os.path.join(args.out, file), m)
        cases.append(dict(name=name, signal=comps, length=n, checksum=float(np.sum(y.astype(np.float64))),
                          params=p, file=file))
    fbs = []
    for fb in FILTERBANKS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fb_too_many_mels has empty filters on purpose
            w = librosa.filters.mel(sr=fb["sr"], n_fft=fb["n_fft"], n_mels=fb["n_mels"], fmin=fb["fmin"],
                                    fmax=fb["fmax"], htk=fb["htk"], norm="slaney" if fb["norm"] == "slaney" else None)
        rows, cols = np.nonzero(w)
        sparse = np.stack([rows, cols, w[rows, cols]], axis=1).astype(np.float32)
        file = fb["name"] + ".npy"
        np.save(os.path.join(args.out, file), sparse)
        fbs.append(dict(fb, file=file, shape=list(w.shape)))
    doc = dict(generator="tools/golden/make_mel_golden.py", librosa=librosa.__version__, numpy=np.__version__,
               sample_rate=SR, cases=cases, filterbanks=fbs)
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {len(cases)} cases and {len(fbs)} filterbanks to {args.out}", file=sys.stderr)


def main_live(args):
    """One whole clip through librosa.load + melspectrogram (+ power_to_db), saved as .npy."""
    import librosa
    p = params(**json.loads(args.params)) if args.params else params()
    y, _ = librosa.load(args.live[0], sr=SR)
    np.save(args.live[1], librosa_mel(y, p))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--audio", default=os.path.join(root, "..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "golden", "mel"))
    ap.add_argument("--live", nargs=2, metavar=("CLIP", "OUT_NPY"))
    ap.add_argument("--params", help="JSON object of parameters overriding the baseline (with --live)")
    a = ap.parse_args()
    main_live(a) if a.live else main_golden(a)
