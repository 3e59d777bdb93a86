#!/usr/bin/env python3
"""GPU idle fraction inside training steps, from Nsight Systems CSV reports.

    nsys stats --report cuda_gpu_trace --format csv --output PREFIX REPORT.nsys-rep
    nsys stats --report nvtx_pushpop_trace --format csv --output PREFIX REPORT.nsys-rep
    tools/bench/gpu_idle.py PREFIX_cuda_gpu_trace.csv [--nvtx PREFIX_nvtx_pushpop_trace.csv] [--json OUT]

The trainer queues batch gathers and steps without waiting for the GPU (host/train/trainer.cpp;
it waits only every train.sync_every_steps steps), so a step's kernels run after the host's
"train step" range has ended and cannot be attributed to it by time. The idle fraction is
therefore taken over the profiled window: from the start of the first GPU activity (kernel,
memcpy, memset) at or after the first "train step" range to the end of the last activity,
idle = 1 - (union of busy intervals) / span. It counts every gap: between kernels inside a step,
between steps, and the waits at the synchronisation points. With --nvtx the number of "train
step" ranges is reported beside it (and the span starts at the first one); without it the whole
trace is the window.
Profile with --cuda-graph-trace=node so a replayed CUDA graph shows its kernels, not one block.
Prints one line per summary and, with --json, writes the numbers.
"""
import argparse
import csv
import json
import statistics
import sys


def read_csv(path):
    with open(path, newline="") as f:
        text = f.read()
    # nsys prints notes before the header on some versions: start at the first line with a comma
    # that names a Start column.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Start" in line and "," in line:
            return list(csv.DictReader(lines[i:]))
    return []


def column(row_keys, *prefixes):
    for p in prefixes:
        for k in row_keys:
            if k.strip().startswith(p):
                return k
    return None


def gpu_intervals(rows):
    if not rows:
        return []
    keys = rows[0].keys()
    start, dur = column(keys, "Start (ns)", "Start"), column(keys, "Duration (ns)", "Duration", "Dur")
    if start is None or dur is None:
        sys.exit("gpu_idle: the GPU trace has no Start/Duration columns: " + ", ".join(keys))
    out = []
    for r in rows:
        try:
            s, d = float(r[start]), float(r[dur])
        except (TypeError, ValueError):
            continue
        out.append((s, s + d))
    out.sort()
    return out


def step_ranges(rows, name):
    if not rows:
        return []
    keys = rows[0].keys()
    start, end = column(keys, "Start (ns)", "Start"), column(keys, "End (ns)", "End")
    label = column(keys, "Name", "Range")
    if start is None or end is None or label is None:
        sys.exit("gpu_idle: the NVTX trace has no Start/End/Name columns: " + ", ".join(keys))
    out = []
    for r in rows:
        if r[label].strip().strip('"').split(":")[-1].strip() == name:
            out.append((float(r[start]), float(r[end])))
    out.sort()
    return out


def busy_and_span(iv):
    """Union length of sorted intervals and the span from the first start to the last end."""
    if not iv:
        return 0.0, 0.0
    busy, cur_s, cur_e = 0.0, iv[0][0], iv[0][1]
    last = max(e for _, e in iv)
    for s, e in iv[1:]:
        if s > cur_e:
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    return busy, last - iv[0][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gpu_trace", help="CSV of nsys stats --report cuda_gpu_trace")
    ap.add_argument("--nvtx", help="CSV of nsys stats --report nvtx_pushpop_trace (step count, window start)")
    ap.add_argument("--range", default="train step", help="NVTX range that marks one step (default: train step)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args()

    iv = gpu_intervals(read_csv(a.gpu_trace))
    if not iv:
        sys.exit("gpu_idle: no GPU activity in " + a.gpu_trace)
    result = {"gpu_activities": len(iv)}
    steps = step_ranges(read_csv(a.nvtx), a.range) if a.nvtx else []
    if steps:
        window = [(s, e) for s, e in iv if s >= steps[0][0]]
        if not window:
            sys.exit("gpu_idle: no GPU activity after the first '%s' range" % a.range)
        busy, span = busy_and_span(window)
        result.update({"scope": "from the first '%s' range to the last GPU activity" % a.range, "steps": len(steps),
                       "idle_fraction": 1.0 - busy / span, "span_ms": span / 1e6,
                       "step_ms_mean": span / len(steps) / 1e6})
        print("GPU idle over %d training steps: %.2f %% of %.3f ms (%.3f ms a step)"
              % (len(steps), 100 * result["idle_fraction"], span / 1e6, span / len(steps) / 1e6))
    else:
        busy, span = busy_and_span(iv)
        result.update({"scope": "whole trace (no NVTX step ranges)", "idle_fraction": 1.0 - busy / span,
                       "span_ms": span / 1e6})
        print("GPU idle over the whole trace (no '%s' ranges): %.2f %% of %.3f ms"
              % (a.range, 100 * result["idle_fraction"], span / 1e6))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
