#!/usr/bin/env python3
"""GPU idle fraction inside training steps, from Nsight Systems CSV reports.

    nsys stats --report cuda_gpu_trace --format csv --output PREFIX REPORT.nsys-rep
    nsys stats --report nvtx_pushpop_trace --format csv --output PREFIX REPORT.nsys-rep
    tools/bench/gpu_idle.py PREFIX_cuda_gpu_trace.csv [--nvtx PREFIX_nvtx_pushpop_trace.csv] [--json OUT]

For every NVTX range named "train step" (host/train/trainer.cpp: one train_step plus the
last_stats() that waits for it) the GPU activities (kernels, memcpys, memsets) that start inside
the range are collected; the step's span runs from the first one's start to the last one's end,
and idle = 1 - (union of their busy intervals) / span: the gaps between kernels, where the GPU
waits for the host to launch the next one. Host time before the first kernel and after the last
(the loss read-back, the next batch's gather) is outside the span on purpose. Without --nvtx the
whole trace is one span (that includes the between-step host work, so it reads higher).
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
    ap.add_argument("--nvtx", help="CSV of nsys stats --report nvtx_pushpop_trace (per-step spans)")
    ap.add_argument("--range", default="train step", help="NVTX range that marks one step (default: train step)")
    ap.add_argument("--json", help="write the numbers here")
    a = ap.parse_args()

    iv = gpu_intervals(read_csv(a.gpu_trace))
    if not iv:
        sys.exit("gpu_idle: no GPU activity in " + a.gpu_trace)
    result = {"gpu_activities": len(iv)}
    steps = step_ranges(read_csv(a.nvtx), a.range) if a.nvtx else []
    if steps:
        per_step, busy_sum, span_sum = [], 0.0, 0.0
        j = 0
        for s, e in steps:
            while j < len(iv) and iv[j][0] < s:
                j += 1
            k = j
            while k < len(iv) and iv[k][0] <= e:
                k += 1
            busy, span = busy_and_span(iv[j:k])
            if span > 0:
                per_step.append(1.0 - busy / span)
                busy_sum += busy
                span_sum += span
        if not per_step:
            sys.exit("gpu_idle: no GPU activity inside any '%s' range" % a.range)
        result.update({"scope": "inside '%s' ranges" % a.range, "steps": len(per_step),
                       "idle_fraction": 1.0 - busy_sum / span_sum,
                       "idle_fraction_median_step": statistics.median(per_step),
                       "step_span_ms_mean": span_sum / len(per_step) / 1e6})
        print("GPU idle inside training steps: %.2f %% (%d steps, median step %.2f %%, mean GPU span %.3f ms)"
              % (100 * result["idle_fraction"], len(per_step), 100 * result["idle_fraction_median_step"],
                 result["step_span_ms_mean"]))
    else:
        busy, span = busy_and_span(iv)
        result.update({"scope": "whole trace (no NVTX step ranges)", "idle_fraction": 1.0 - busy / span,
                       "span_ms": span / 1e6})
        print("GPU idle over the whole trace (no '%s' ranges; includes between-step host work): %.2f %% of %.3f ms"
              % (a.range, 100 * result["idle_fraction"], span / 1e6))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
