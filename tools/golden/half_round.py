#!/usr/bin/env python3
"""Reference float32 -> bfloat16 / float16 rounding for tests/test_nn_mixed_precision.cpp.

float16: numpy's astype(np.float16) (IEEE round to nearest, ties to even). bfloat16 (numpy has no
such type): the two bf16 neighbours of x by truncating its float32 bits, the nearer one in float64
arithmetic, ties to the even pattern, past the largest bf16 to infinity (as if 2^128 were the next
value). Prints one line per input: "r <float32 bits> <fp16 bits> <bf16 bits>" in hex, then one
line per fp16 pattern: "d <fp16 bits> <float32 bits of its value>".
usage: half_round.py [--count N]
"""
import argparse

import numpy as np


def edge_inputs():
    f = np.float32
    vals = [0.0, -0.0, 1.0, -2.0, 65504.0, 65519.0, 65520.0, -65520.0, 65536.0, 1e6, 2.0**-14, 2.0**-24, 2.0**-25,
            3 * 2.0**-25, 2.0**-25 + 2.0**-40, 2.0**-14 - 2.0**-25, 2.0**-14 - 2.0**-26, 1e-8, 1 + 2.0**-11,
            1 + 3 * 2.0**-11, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-8 + 2.0**-20, 3.3895313892515355e38,
            3.4028234663852886e38, np.inf, -np.inf, np.nan, 1e-45, 1e-40, -1e-39, 0.1, -0.3333333]
    bits = [np.array(v, dtype=f).view(np.uint32) for v in vals]
    bits += [np.uint32(b) for b in (0x7F7F8000, 0x7F7F7FFF, 0x00018000, 0x00028000, 0x3F808000, 0x3F818000,
                                    0xFFC00001, 0x7F800001, 0x80000001, 0x477FEFFF, 0x477FF000, 0x38800000,
                                    0x387FFFFF, 0x33000000, 0x33000001, 0x337FFFFF, 0x3F801000, 0x3F803000)]
    return np.array(bits, dtype=np.uint32)


def bf16_reference(u):
    out = np.empty(u.shape, dtype=np.uint32)
    for i, b in enumerate(u.tolist()):
        x = np.array(b, dtype=np.uint32).view(np.float32)
        if np.isnan(x):
            out[i] = ((b >> 16) | 0x40) & 0xFFFF  # quiet NaN, sign kept (only NaN-ness is compared)
            continue
        t = b & 0xFFFF0000
        n = t + 0x10000
        xv = float(x)
        tv = float(np.array(t, dtype=np.uint32).view(np.float32))
        if (n & 0x7FFFFFFF) == 0x7F800000 or (n & 0x7FFFFFFF) > 0x7F800000:
            nv = (2.0**128) * (-1 if b >> 31 else 1)
        else:
            nv = float(np.array(n, dtype=np.uint32).view(np.float32))
        if np.isinf(x):
            out[i] = t >> 16
            continue
        dl, dh = abs(xv - tv), abs(nv - xv)
        pick = t if dl < dh else n if dh < dl else (t if (t >> 16) % 2 == 0 else n)
        out[i] = (pick >> 16) & 0xFFFF
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    u = np.concatenate([edge_inputs(), rng.integers(0, 2**32, a.count, dtype=np.uint64).astype(np.uint32),
                        # dense around the fp16 subnormal/normal and overflow boundaries
                        np.arange(0x33000000, 0x33000000 + 2000, 37, dtype=np.uint32),
                        np.arange(0x387FF000, 0x38801000, 13, dtype=np.uint32),
                        np.arange(0x477FE000, 0x47801000, 29, dtype=np.uint32)])
    with np.errstate(over="ignore", invalid="ignore"):
        h = u.view(np.float32).astype(np.float16).view(np.uint16)
    bf = bf16_reference(u)
    lines = [f"r {int(x):08x} {int(y):04x} {int(z):04x}" for x, y, z in zip(u, h, bf)]
    p = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    d = p.view(np.float16).astype(np.float32).view(np.uint32)
    lines += [f"d {int(x):04x} {int(y):08x}" for x, y in zip(p, d)]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
