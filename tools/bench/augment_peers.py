#!/usr/bin/env python3
"""Peers of `genrelab bench --what augment`: the baseline's offline augmentation (per clip a noise
copy with p 0.7 and a pitch-shift copy with p 0.5, clips of 617 400 samples) done by
audiomentations + librosa on the CPU (AddGaussianNoise(0.001, 0.015) and
PitchShift(-4, 12, method="librosa_phase_vocoder"), i.e. librosa.effects.pitch_shift), and by
torchaudio's PitchShift on the GPU when torch/torchaudio import and CUDA is available.
Prints (and with --json writes) the JSON of tools/bench/README.md: work "augment-offline-baseline",
items_per_s = source clips/s, one result per implementation (each names its "peer" and "device").

usage: augment_peers.py [--clips N] [--plan GENRELAB_BENCH.json] [--device cpu|cuda|both] [--repeat N] [--json OUT.json]
  --device: cpu = audiomentations + librosa, cuda = torchaudio, both (the default); --skip-gpu = cpu
  --repeat: timed passes on the GPU after a warm-up, the median counts (default 5); the CPU: one pass
  --plan: replay exactly the applied copies (kind, value) that `genrelab bench --what augment
          --json FILE` drew, so both sides do the same work; without it the copies are drawn here.
"""
import argparse
import json
import sys
import time

import numpy as np

SAMPLES = 617400
SR = 22050


def synth_clip(k):
    t = np.arange(SAMPLES) / SR
    f0 = 110.0 * (1 + k % 7)
    v = sum(0.2 / h * np.sin(2 * np.pi * f0 * h * t + 0.3 * np.sin(2 * np.pi * 4 * t)) for h in range(1, 5))
    return (v + 0.01 * np.random.RandomState(k).randn(SAMPLES)).astype(np.float32)


def make_plan(args):
    if args.plan:
        with open(args.plan) as f:
            j = json.load(f)
        return int(j["clips"]), [(k, float(v)) for k, v in j["steps"]]
    rng = np.random.RandomState(0)
    steps = []
    for _ in range(args.clips):
        if rng.rand() < 0.7:
            steps.append(("noise", rng.uniform(0.001, 0.015)))
        if rng.rand() < 0.5:
            steps.append(("pitch_shift", rng.uniform(-4, 12)))
    return args.clips, steps


def run_cpu(clips, steps, sources):
    from audiomentations import AddGaussianNoise, PitchShift
    # numba-compiled helpers of librosa (istft overlap-add) are compiled on first use: warm up
    PitchShift(min_semitones=1, max_semitones=1, method="librosa_phase_vocoder", p=1.0)(
        samples=sources[0][:22050], sample_rate=SR)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i, (kind, value) in enumerate(steps):
        x = sources[i % len(sources)]
        if kind == "noise":
            a = AddGaussianNoise(min_amplitude=value, max_amplitude=value, p=1.0)
        else:
            a = PitchShift(min_semitones=value, max_semitones=value, method="librosa_phase_vocoder", p=1.0)
        y = a(samples=x, sample_rate=SR)
        assert y.shape == x.shape
    return time.perf_counter() - t0, time.process_time() - c0


def run_gpu(clips, steps, sources, repeat):
    import torch
    import torchaudio
    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    src = [torch.from_numpy(s).to(dev) for s in sources]
    shifters = {}

    def work():
        for i, (kind, value) in enumerate(steps):
            x = src[i % len(src)]
            if kind == "noise":
                y = x + value * torch.randn_like(x)
            else:
                key = round(value, 3)
                if key not in shifters:  # torchaudio's PitchShift takes a fixed n_steps per module
                    shifters[key] = torchaudio.transforms.PitchShift(SR, n_steps=key, n_fft=2048, hop_length=512).to(dev)
                y = shifters[key](x[None])[0]
        torch.cuda.synchronize()

    work()  # warm-up (module construction, cuFFT plans)
    times = []
    for _ in range(repeat):  # the median pass, as `genrelab bench --what augment` on the GPU
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--plan")
    ap.add_argument("--device", choices=["cpu", "cuda", "both"], default="both")
    ap.add_argument("--skip-gpu", action="store_true", help="same as --device cpu")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes on the GPU (the median counts); default 5")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.skip_gpu:
        args.device = "cpu"
    clips, steps = make_plan(args)
    sources = [synth_clip(k) for k in range(min(clips, 4))]
    n_noise = sum(1 for k, _ in steps if k == "noise")
    n_pitch = len(steps) - n_noise
    common = {"work": "augment-offline-baseline", "items": clips, "unit": "clips", "samples": SAMPLES,
              "noise_applied": n_noise, "pitch_applied": n_pitch}
    results = []
    if args.device in ("cpu", "both"):
        sec, cpu = run_cpu(clips, steps, sources)
        results.append({**common, "peer": "librosa+audiomentations", "device": "cpu", "seconds": sec,
                        "cpu_seconds": cpu, "items_per_s": clips / sec})
    if args.device in ("cuda", "both"):
        skipped = None
        try:
            sec = run_gpu(clips, steps, sources, max(1, args.repeat))
            if sec is None:
                skipped = "no CUDA device"
        except ImportError as e:
            skipped = f"not importable: {e}"
        if skipped:  # no "items_per_s": compare.py leaves it out of the table
            results.append({**common, "peer": "torchaudio", "device": "cuda", "skipped": skipped})
        else:
            results.append({**common, "peer": "torchaudio", "device": "cuda", "seconds": sec,
                            "items_per_s": clips / sec})
    doc = {"peer": results[0]["peer"], "device": results[0]["device"], "results": results}
    print(json.dumps(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    if args.device == "cuda" and "skipped" in results[0]:
        print(f"augment_peers: torchaudio on the GPU: {results[0]['skipped']}", file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
