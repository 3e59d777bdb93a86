#!/usr/bin/env python3
"""Reads a GenreLab checkpoint from its documented format (docs/checkpoint-format.md) alone, for
tests/test_nn_checkpoint.cpp: checks the magic, recomputes the checksum (XXH3-64 from the xxhash
package for version 2, FNV-1a 64 for version 1) and prints JSON: version, checksum_ok, epoch, step
and every tensor's name, shape and float32 values (as Python floats, whose repr round-trips).
usage: checkpoint_reference.py CHECKPOINT
"""
import json
import struct
import sys

import numpy as np
import xxhash


def fnv1a_v1(b):
    h = 1469598103934665603  # version 1's offset basis
    for c in b:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    b = open(sys.argv[1], "rb").read()
    if b[:8] != b"GLABCKPT":
        sys.exit("not a checkpoint: bad magic")
    version, _flags, hlen = struct.unpack_from("<IIQ", b, 8)
    header = json.loads(b[24:24 + hlen])
    start = (24 + hlen + 63) // 64 * 64
    end = start + header["data_bytes"]
    if len(b) != end + 8:
        sys.exit(f"{len(b)} bytes, the header describes {end + 8}")
    stored = struct.unpack_from("<Q", b, end)[0]
    want = xxhash.xxh3_64_intdigest(b[:end]) if version >= 2 else fnv1a_v1(b[:end])
    tensors = []
    for t in header["tensors"]:
        n = t["bytes"] // 4
        w = np.frombuffer(b, "<f4", n, start + t["offset"])
        tensors.append({"name": t["name"], "shape": t["shape"], "values": [float(v) for v in w]})
    print(json.dumps({"version": version, "checksum_ok": stored == want, "epoch": header["epoch"],
                      "step": header["step"], "tensors": tensors}))


if __name__ == "__main__":
    main()
