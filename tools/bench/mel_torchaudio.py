#!/usr/bin/env python3
"""GPU peer of `genrelab bench --what features --device cuda`: torchaudio's MelSpectrogram with
librosa-matched parameters (periodic Hann, centred reflect padding, power 2, Slaney mel scale and
Slaney area norm, fmin 0, fmax sr/2) on the same work: N synthetic clips of 617 400 samples,
transformed as one batch on the GPU. Checks the first clip against librosa when it is installed,
then prints (and with --json writes) the JSON of tools/bench/README.md, work "mel-baseline",
items_per_s = clips/s (median of --iterations; CUDA-event timing on the GPU, wall clock on the CPU).

usage: mel_torchaudio.py [--clips 256] [--iterations 10] [--device cuda|cpu] [--json OUT.json]
"""
import argparse
import json
import time

import numpy as np
import torch
import torchaudio

SR = 22050


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--samples", type=int, default=617400)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device visible to PyTorch; use --device cpu")
    dev = torch.device(a.device)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=1024, win_length=1024, hop_length=512, f_min=0.0, f_max=SR / 2, n_mels=128,
        window_fn=torch.hann_window, power=2.0, normalized=False, center=True, pad_mode="reflect",
        norm="slaney", mel_scale="slaney").to(dev)
    gen = torch.Generator(device="cpu").manual_seed(0)
    audio = (torch.randn(a.clips, a.samples, generator=gen) * 0.1).to(dev)

    with torch.inference_mode():
        out = mel(audio)  # warm-up: cuFFT plan, filterbank upload
        try:
            import librosa
            ref = librosa.feature.melspectrogram(y=audio[0].cpu().numpy(), sr=SR, n_fft=1024, hop_length=512,
                                                 n_mels=128, pad_mode="reflect", htk=False, norm="slaney")
            err = float(np.abs(out[0].cpu().numpy() - ref).max() / np.abs(ref).max())
        except ImportError:
            err = None
        times = []
        cuda = dev.type == "cuda"
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(a.iterations):
            if cuda:
                start.record()
                mel(audio)
                stop.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(stop) / 1e3)
            else:
                t0 = time.perf_counter()
                mel(audio)
                times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    doc = {"peer": "torchaudio", "version": torchaudio.__version__, "torch": torch.__version__,
           "device": dev.type, "device_name": name,
           "results": [{"work": "mel-baseline", "device": dev.type, "items": a.clips, "unit": "clips",
                        "samples_per_clip": a.samples, "seconds": median, "items_per_s": a.clips / median,
                        "max_rel_error_vs_librosa": err, "output_shape": list(out.shape)}]}
    print(json.dumps(doc))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)

if __name__ == "__main__":
    main()
