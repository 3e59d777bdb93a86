#!/usr/bin/env python3
"""Ratio table of GenreLab benchmarks against their peers (PyTorch/torchaudio on the GPU,
librosa/audiomentations on the CPU), from the JSON files one run wrote into a folder.

Every file holds {"results": [{"work": NAME, "items_per_s": X, ...}, ...]} plus either
"bench" (ours, written by `genrelab bench --json`) or "peer" (a tools/bench/*.py script; a result
may name its own "peer"). Each peer result is paired with our result for the same "work": the one
on the same device when there is one (else ours on another device, shown in the table), and never
one of another "precision" when both name theirs. Results without "items_per_s" (skipped) are left out.

usage: compare.py FOLDER
"""
import json
import pathlib
import sys


def load(folder):
    ours, peers = [], []
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            print(f"compare: skipping {path}: {exc}", file=sys.stderr)
            continue
        if not isinstance(doc, dict) or ("bench" not in doc and "peer" not in doc):
            continue
        for r in doc.get("results", []):
            if not isinstance(r, dict) or "work" not in r or not r.get("items_per_s"):
                continue
            r = dict(r)
            r.setdefault("device", doc.get("device", ""))
            if "precision" not in r and "precision" in doc:
                r["precision"] = doc["precision"]
            if "peer" in doc:
                r.setdefault("peer", doc["peer"])
                peers.append(r)
            else:
                ours.append(r)
    return ours, peers


def pair(mine_list, peer):
    """Our result for this peer result, or None."""
    best, best_score = None, -1
    for m in mine_list:
        if m["work"] != peer["work"]:
            continue
        if "precision" in m and "precision" in peer and m["precision"] != peer["precision"]:
            continue
        score = (m["device"] == peer["device"]) * 2 + ("precision" in m and "precision" in peer)
        if score > best_score:
            best, best_score = m, score
    return best


def label(r):
    return r["device"] + (f" {r['precision']}" if r.get("precision") else "") + (" (extrapolated)" if r.get("extrapolated") else "")


def table(ours, peers):
    lines = ["| work | genrelab on | genrelab items/s | peer | peer on | peer items/s | ratio (genrelab / peer) |",
             "|---|---|---|---|---|---|---|"]
    for p in sorted(peers, key=lambda r: (r["work"], r["peer"], r["device"], r.get("precision", ""))):
        m = pair(ours, p)
        if m is None:
            continue
        ratio = m["items_per_s"] / p["items_per_s"]
        lines.append(f"| {p['work']} | {label(m)} | {m['items_per_s']:.4g} | {p['peer']} | {label(p)} | "
                     f"{p['items_per_s']:.4g} | {ratio:.2f}x |")
    if len(lines) == 2:
        lines.append("| (no matching results) | | | | | | |")
    return lines


def main():
    if len(sys.argv) != 2:
        print("usage: compare.py FOLDER", file=sys.stderr)
        return 2
    if not pathlib.Path(sys.argv[1]).is_dir():
        print(f"compare: {sys.argv[1]} is not a folder", file=sys.stderr)
        return 2
    ours, peers = load(sys.argv[1])
    print("\n".join(table(ours, peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
