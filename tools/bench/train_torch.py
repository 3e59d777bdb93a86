#!/usr/bin/env python3
"""PyTorch peer of `genrelab bench --what train`: one training epoch of the baseline model (SPEC §1)
on random data of the baseline's shape, timed the same way.

Model (Keras layout NHWC 128×1206×1; here NCHW tensors in channels-last memory):
Conv2D(64, 2×2, relu, valid) → MaxPool 2 → Dropout 0.1 → Conv2D(128) → MaxPool 2 → Dropout 0.1 →
Conv2D(256) → MaxPool 4 → Dropout 0.1 → Conv2D(512) → MaxPool 6 → Dropout 0.1 → Flatten (6 144) →
Dense 2048 relu → Dense 1024 relu → Dense 256 relu → Dense 10 (softmax in the loss);
15 637 450 parameters (checked). Adam(lr 1e-3, betas (0.9, 0.999), eps 1e-7), batch 32,
cross-entropy. One epoch = 2 397 examples (74 steps of 32 and one of 29), already on the device;
only the training loop after --warmup steps is timed (torch.cuda.synchronize around it).

Precision: fp32 (strict: TF32 off for matmul and cuDNN), tf32 (TF32 allowed), bf16 (autocast to
bfloat16 on top of tf32; fp32 master weights, like genrelab's train.precision=bf16), fp16 (autocast
to float16 on top of tf32 with a GradScaler at its defaults: initial scale 2^16, x2 every 2000
finite steps, x0.5 and the step skipped on overflow, like genrelab's train.precision=fp16).

On --device cpu only --steps full steps run (default 3) and the epoch time is EXTRAPOLATED from them
("extrapolated": true in the JSON and a note on stderr).

Prints (and with --json writes) the JSON of tools/bench/README.md: work "train-epoch-baseline",
items_per_s = examples/s, with "precision".

usage: train_torch.py [--device cuda|cpu] [--precision fp32|tf32|bf16|fp16] [--examples 2397] [--batch 32]
                      [--warmup N] [--steps N] [--json OUT.json]
"""
import argparse
import json
import math
import sys
import time

import torch
from torch import nn

N_MELS, N_FRAMES, CLASSES = 128, 1206, 10
BASELINE_PARAMS = 15_637_450


def baseline_model():
    def block(cin, cout, pool):
        return [nn.Conv2d(cin, cout, kernel_size=2, padding=0), nn.ReLU(inplace=True),
                nn.MaxPool2d(pool), nn.Dropout(0.1)]

    layers = block(1, 64, 2) + block(64, 128, 2) + block(128, 256, 4) + block(256, 512, 6)
    layers += [nn.Flatten(),
               nn.Linear(6144, 2048), nn.ReLU(inplace=True),
               nn.Linear(2048, 1024), nn.ReLU(inplace=True),
               nn.Linear(1024, 256), nn.ReLU(inplace=True),
               nn.Linear(256, CLASSES)]
    model = nn.Sequential(*layers)
    for m in model.modules():  # Keras defaults: Glorot-uniform kernels, zero biases
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def set_precision(precision, device):
    tf32 = precision in ("tf32", "bf16", "fp16")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16", "fp16"], default="fp32")
    ap.add_argument("--examples", type=int, default=2397, help="examples per epoch (the baseline's training set)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, help="untimed steps first (cuDNN autotuning, allocator); default 5, CPU 1")
    ap.add_argument("--steps", type=int, help="time only this many full steps and extrapolate (CPU default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the result to this file")
    a = ap.parse_args()
    if a.warmup is None:
        a.warmup = 1 if a.device == "cpu" else 5
    if a.examples < 1 or a.batch < 1 or a.warmup < 0:
        ap.error("--examples and --batch must be positive, --warmup non-negative")
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device visible to PyTorch; use --device cpu")
    dev = torch.device(a.device)
    torch.manual_seed(a.seed)
    set_precision(a.precision, dev)

    model = baseline_model()
    params = sum(p.numel() for p in model.parameters())
    if params != BASELINE_PARAMS:
        raise SystemExit(f"train_torch: the model has {params} parameters, the baseline has {BASELINE_PARAMS}")
    model = model.to(dev, memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()

    epoch_steps = math.ceil(a.examples / a.batch)
    steps = a.steps if a.steps is not None else (3 if dev.type == "cpu" else epoch_steps)
    steps = max(1, min(steps, epoch_steps))
    extrapolated = steps < epoch_steps
    # The data the timed steps read, on the device: the whole epoch, or only the full steps timed.
    n_data = a.examples if not extrapolated else steps * a.batch
    gen = torch.Generator(device="cpu").manual_seed(a.seed)
    x = torch.rand(n_data, 1, N_MELS, N_FRAMES, generator=gen).to(dev).contiguous(memory_format=torch.channels_last)
    y = (torch.arange(n_data) % CLASSES).to(dev)
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.precision)
    use_fp16 = a.precision == "fp16"
    if use_fp16 and hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        scaler = torch.amp.GradScaler(dev.type, enabled=True)
    else:
        scaler = torch.cuda.amp.GradScaler(enabled=use_fp16)

    def step(lo, hi):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=low or torch.float32, enabled=low is not None):
            loss = loss_fn(model(x[lo:hi]), y[lo:hi])
        if use_fp16:  # scaled backward, unscale + skip on overflow, scale update
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    first_loss = None
    for w in range(a.warmup):
        lo = (w * a.batch) % max(1, n_data - a.batch + 1)
        loss = step(lo, min(n_data, lo + a.batch))
        if first_loss is None:
            first_loss = float(loss)  # random init: near ln(10) = 2.303
    tail = a.examples % a.batch
    if not extrapolated and tail and a.warmup > 0:
        step(0, tail)  # the epoch's last, partial batch has its own shape: autotune it outside the timing
    if first_loss is not None and not math.isfinite(first_loss):
        raise SystemExit(f"train_torch: the warm-up step gave loss {first_loss}")
    sync()
    t0 = time.perf_counter()
    timed_examples = 0
    for s in range(steps):
        lo = s * a.batch
        hi = min(a.examples if not extrapolated else n_data, lo + a.batch)
        step(lo, hi)
        timed_examples += hi - lo
    sync()
    seconds = time.perf_counter() - t0
    epoch_s = seconds * a.examples / timed_examples if extrapolated else seconds
    if extrapolated:
        print(f"train_torch: timed {steps} of the epoch's {epoch_steps} steps; the epoch time is extrapolated",
              file=sys.stderr)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    doc = {"peer": "pytorch", "torch": torch.__version__, "device": dev.type, "device_name": name,
           "precision": a.precision, "cudnn_benchmark": dev.type == "cuda", "channels_last": True,
           "params": params, "first_loss": first_loss,
           "results": [{"work": "train-epoch-baseline", "device": dev.type, "precision": a.precision,
                        "items": a.examples, "unit": "examples", "batch": a.batch, "epoch_steps": epoch_steps,
                        "timed_steps": steps, "extrapolated": extrapolated, "seconds": epoch_s,
                        "ms_per_step": seconds * 1e3 / steps, "items_per_s": a.examples / epoch_s}]}
    print(json.dumps(doc))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
