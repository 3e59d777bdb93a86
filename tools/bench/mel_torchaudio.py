#!/usr/bin/env python3
"""GPU peer of `genrelab bench --what features --device cuda`: torchaudio's MelSpectrogram with
librosa-matched parameters (periodic Hann, centred reflect padding, power 2, Slaney mel scale and
Slaney area norm, fmin 0, fmax sr/2) on the same work: N synthetic clips of 617 400 samples,
transformed as one batch on the GPU. Checks the first clip against librosa when it is installed,
then prints one JSON line with clips/s (CUDA-event timing, median of --iterations).

usage: mel_torchaudio.py [--clips 256] [--iterations 10] [--device cuda]
"""
import argparse
import json

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
    a = ap.parse_args()
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
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for _ in range(a.iterations):
            start.record()
            mel(audio)
            stop.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(stop) / 1e3)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"tool": "torchaudio", "version": torchaudio.__version__, "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(dev), "clips": a.clips, "samples_per_clip": a.samples,
                      "median_seconds": median, "clips_per_s": a.clips / median,
                      "max_rel_error_vs_librosa": err, "output_shape": list(out.shape)}))


if __name__ == "__main__":
    main()
