#!/usr/bin/env python3
"""Python references for tests/test_audio.cpp (soundfile + soxr, the resampler behind librosa).

  audio_reference.py golden OUT.f32        the synthetic 44.1 kHz stereo test signal (see
                                           stereo_test_signal), channel mean, librosa.resample
                                           (res_type='soxr_hq') to 22050 Hz; raw float32
  audio_reference.py resample IN OUT.f32   soundfile decode of IN, channel mean, soxr_hq to 22050 Hz
  audio_reference.py decode IN... OUTDIR   soundfile float32 decode of each IN (channel mean) to
                                           OUTDIR/<i>.f32
"""
import os
import sys

import numpy as np


def stereo_test_signal():
    """(11025, 2) float32 at 44100 Hz: tones at 440, 3000, 9000 Hz (kept) and 15000 Hz (above the
    22050 Hz output's Nyquist, removed) on the left; 1234.5 Hz and a 200->8000 Hz chirp on the right.
    tests/test_audio.cpp builds the same signal."""
    n, sr = 11025, 44100.0
    t = np.arange(n) / sr
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t) + \
        0.1 * np.sin(2 * np.pi * 9000 * t) + 0.1 * np.sin(2 * np.pi * 15000 * t)
    # chirp: instantaneous frequency 200 + (7800 / 0.25) * t
    right = 0.3 * np.sin(2 * np.pi * 1234.5 * t + 0.3) + 0.2 * np.sin(2 * np.pi * (200 * t + 7800 / 0.25 / 2 * t * t))
    return np.stack([left, right], 1).astype(np.float32)


def soxr(mono, sr):
    # What librosa.resample(mono, orig_sr=sr, target_sr=22050, res_type="soxr_hq") computes (librosa
    # 0.11 calls soxr.resample with quality "soxr_hq"); soxr alone imports in a fraction of the time.
    import soxr as soxr_lib
    return soxr_lib.resample(mono.astype(np.float32), sr, 22050, quality="soxr_hq").astype(np.float32)


def main():
    cmd = sys.argv[1]
    if cmd == "golden":
        x = stereo_test_signal()
        soxr(x.mean(1, dtype=np.float32), 44100).astype("<f4").tofile(sys.argv[2])
    elif cmd == "resample":
        import soundfile as sf
        x, sr = sf.read(sys.argv[2], dtype="float32", always_2d=True)
        soxr(x.mean(1, dtype=np.float32), sr).astype("<f4").tofile(sys.argv[3])
    elif cmd == "decode":
        import soundfile as sf
        out = sys.argv[-1]
        for i, path in enumerate(sys.argv[2:-1]):
            x, _ = sf.read(path, dtype="float32", always_2d=True)
            x.mean(1, dtype=np.float32).astype("<f4").tofile(os.path.join(out, "%d.f32" % i))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
