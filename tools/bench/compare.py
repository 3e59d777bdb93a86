#!/usr/bin/env python3
"""Ratio table of GenreLab benchmarks against their peers (PyTorch/torchaudio on the GPU,
librosa/audiomentations on the CPU), from the JSON files one run wrote into a folder.

Every file holds {"results": [{"work": NAME, "items_per_s": X, ...}, ...]} plus either
"bench" (ours, written by `genrelab bench --json`) or "peer" (a tools/bench/*.py script).
Rows pair our result and each peer's for the same "work" (and device, when both say).
"""
import json
import pathlib
import sys


def load(folder):
    ours, peers = {}, []
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"compare: skipping {path}: {exc}", file=sys.stderr)
            continue
        for r in doc.get("results", []):
            if "work" not in r or "items_per_s" not in r:
                continue
            dev = r.get("device", doc.get("device", ""))
            if "peer" in doc:
                peers.append((doc["peer"], dev, r))
            else:
                ours[(r["work"], dev)] = r
    return ours, peers


def main():
    if len(sys.argv) != 2:
        print("usage: compare.py FOLDER", file=sys.stderr)
        return 2
    ours, peers = load(sys.argv[1])
    print("| work | device | genrelab items/s | peer | peer items/s | ratio (genrelab / peer) |")
    print("|---|---|---|---|---|---|")
    rows = 0
    for peer, dev, r in peers:
        mine = ours.get((r["work"], dev)) or next((v for (w, _), v in ours.items() if w == r["work"]), None)
        if mine is None:
            continue
        ratio = mine["items_per_s"] / r["items_per_s"] if r["items_per_s"] else float("inf")
        print(f"| {r['work']} | {dev} | {mine['items_per_s']:.4g} | {peer} | {r['items_per_s']:.4g} | {ratio:.2f}x |")
        rows += 1
    if rows == 0:
        print("| (no matching results) | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
