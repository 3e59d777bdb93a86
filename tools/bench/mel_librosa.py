#!/usr/bin/env python3
"""CPU peer of `genrelab bench --what features` and of `genrelab features`: librosa mel spectrograms.

Default: N synthetic clips (617 400 samples = 28 s at 22 050 Hz, the baseline length) through
librosa.feature.melspectrogram with the baseline parameters; prints (and with --json writes) the
JSON of tools/bench/README.md, work "mel-baseline", items_per_s = clips/s (best of --repeat).
With --files: the end-to-end job of `genrelab features FILE... --out OUT.npy
--set dataset.clip_samples=617400` (librosa.load, melspectrogram, np.save), to time with `time`.

usage: mel_librosa.py [--clips 16] [--repeat 3] [--device cpu] [--json OUT.json]
       mel_librosa.py --files A.flac B.flac ... --out OUT.npy [--clip-samples 617400]
"""
import argparse
import json
import time

import numpy as np
import librosa

SR = 22050
PARAMS = dict(sr=SR, n_fft=1024, hop_length=512, n_mels=128, power=2.0, center=True, pad_mode="reflect",
              htk=False, norm="slaney", fmin=0.0, fmax=None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--samples", type=int, default=617400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--files", nargs="+")
    ap.add_argument("--out")
    ap.add_argument("--clip-samples", type=int, default=617400)
    ap.add_argument("--device", default="cpu", help="cpu only (librosa has no GPU backend)")
    ap.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args()
    if a.device != "cpu":
        ap.error("librosa runs on the CPU only: use --device cpu")
    if a.files:
        mels = []
        for f in a.files:
            y, _ = librosa.load(f, sr=SR, duration=a.clip_samples / SR)
            y = librosa.util.fix_length(y, size=a.clip_samples)
            mels.append(librosa.feature.melspectrogram(y=y, **PARAMS))
        np.save(a.out, np.stack(mels).astype(np.float32))
        return
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((a.clips, a.samples)) * 0.1).astype(np.float32)
    librosa.feature.melspectrogram(y=audio[0], **PARAMS)  # warm-up (filterbank cache, imports)
    best = float("inf")
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for y in audio:
            librosa.feature.melspectrogram(y=y, **PARAMS)
        best = min(best, time.perf_counter() - t0)
    doc = {"peer": "librosa", "version": librosa.__version__, "device": "cpu",
           "results": [{"work": "mel-baseline", "device": "cpu", "items": a.clips, "unit": "clips",
                        "samples_per_clip": a.samples, "seconds": best, "items_per_s": a.clips / best}]}
    print(json.dumps(doc))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)

if __name__ == "__main__":
    main()
