"""Time lab 2's convolution (conv2d + conv2d_backward) against torch's, on LeNet-5 and AlexNet layers.

    python benchmarks/bench_conv.py                 # CPU, and CUDA when there is a GPU
    python benchmarks/bench_conv.py --quick         # a smoke test: small batches, few repeats, not saved
    python benchmarks/bench_conv.py --impl labs     # time your own labs/conv.py
    python benchmarks/bench_conv.py --threads 1     # on a machine busy with other work

For every layer shape of LeNet-5 (LeCun et al., 1998) and AlexNet (Krizhevsky et al., 2012),
one step is a forward plus a backward pass: `conv2d` then `conv2d_backward` for ours,
F.conv2d then autograd for torch. The two run interleaved (ours, torch, torch, ours, ...),
so a machine that is busy with something else slows both alike and the ratio stays fair even
when the absolute times do not; we report medians. The naive loop version (exercise 2.3) is
timed forward-only on a small input, to show the gap that vectorizing closes.

Results go to benchmarks/results/conv-<device>.json (medians in milliseconds, ratios, device
name, torch version, threads) and a table is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from reporting import REPO_ROOT, RESULTS_DIR, device_name, save_json, utc_timestamp

# name, (C_in, H, W), (C_out, kernel, stride, padding, groups), family
LAYERS = [
    ("LeNet-5 C1", (1, 32, 32), (6, 5, 1, 0, 1), "lenet"),
    ("LeNet-5 C3", (6, 14, 14), (16, 5, 1, 0, 1), "lenet"),
    ("AlexNet conv1", (3, 227, 227), (96, 11, 4, 0, 1), "alexnet"),
    ("AlexNet conv2", (96, 27, 27), (256, 5, 1, 2, 2), "alexnet"),
    ("AlexNet conv3", (256, 13, 13), (384, 3, 1, 1, 1), "alexnet"),
    ("AlexNet conv4", (384, 13, 13), (384, 3, 1, 1, 2), "alexnet"),
    ("AlexNet conv5", (384, 13, 13), (256, 3, 1, 1, 2), "alexnet"),
]

# batch sizes: (LeNet, AlexNet), modest on CPU
BATCHES = {"cpu": (64, 8), "cuda": (256, 64)}
QUICK_BATCHES = {"cpu": (8, 1), "cuda": (32, 8)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> float:
    """Seconds for one call of fn, waiting for the GPU before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def interleaved_medians(fns: dict, device: torch.device, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call for each function, run in turns with the order rotating every repeat."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: nobody always goes first
        for name in order:
            times[name].append(_time(fns[name], device))
    return {name: statistics.median(values) for name, values in times.items()}


def bench_layer(conv, layer, batch: int, device: torch.device, repeats: int) -> dict:
    """Forward + backward of one layer: ours (conv2d + conv2d_backward) against F.conv2d + autograd."""
    name, (c_in, h, w_), (c_out, k, stride, padding, groups), _ = layer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c_in, h, w_, generator=g).to(device)  # (N, C_in, H, W)
    w = (torch.randn(c_out, c_in // groups, k, k, generator=g) * 0.05).to(device)  # (C_out, C_in/G, k, k)
    b = torch.zeros(c_out).to(device)  # (C_out,)
    out_shape = F.conv2d(x, w, b, stride, padding, 1, groups).shape
    dout = torch.randn(out_shape, generator=g).to(device)  # (N, C_out, H_out, W_out)
    x_ref, w_ref, b_ref = (t.clone().requires_grad_() for t in (x, w, b))

    def ours():
        conv.conv2d(x, w, b, stride, padding, 1, groups)
        conv.conv2d_backward(dout, x, w, stride, padding, 1, groups)

    def reference():
        out = F.conv2d(x_ref, w_ref, b_ref, stride, padding, 1, groups)
        torch.autograd.grad(out, (x_ref, w_ref, b_ref), dout)

    medians = interleaved_medians({"ours": ours, "torch": reference}, device, repeats)
    return {
        "layer": name,
        "input": [batch, c_in, h, w_],
        "weight": list(w.shape),
        "stride": stride,
        "padding": padding,
        "groups": groups,
        "ours_ms": round(medians["ours"] * 1e3, 3),
        "torch_ms": round(medians["torch"] * 1e3, 3),
        "ratio": round(medians["ours"] / medians["torch"], 2),
    }


def bench_naive(conv, device: torch.device, repeats: int, batch: int) -> dict:
    """Forward only, LeNet-5's C1 on a small batch: loops (2.3) against unfold (2.4) against torch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 32, 32, generator=g).to(device)  # (N, 1, 32, 32)
    w = torch.randn(6, 1, 5, 5, generator=g).to(device)  # (6, 1, 5, 5)
    with torch.no_grad():
        medians = interleaved_medians(
            {
                "naive": lambda: conv.conv2d_naive(x, w),
                "vectorized": lambda: conv.conv2d(x, w),
                "torch": lambda: F.conv2d(x, w),
            },
            device,
            repeats,
            warmup=1,
        )
    return {
        "layer": "LeNet-5 C1, forward only",
        "input": [batch, 1, 32, 32],
        **{f"{name}_ms": round(value * 1e3, 3) for name, value in medians.items()},
        "naive_over_vectorized": round(medians["naive"] / medians["vectorized"], 1),
        "vectorized_over_torch": round(medians["vectorized"] / medians["torch"], 2),
    }


def run(conv, device: torch.device, quick: bool, repeats: int) -> dict:
    lenet_batch, alexnet_batch = (QUICK_BATCHES if quick else BATCHES)[device.type]
    rows = []
    for layer in LAYERS:
        batch = lenet_batch if layer[3] == "lenet" else alexnet_batch
        rows.append(bench_layer(conv, layer, batch, device, repeats))
        print(f"  {rows[-1]['layer']:<14} ours {rows[-1]['ours_ms']:9.2f} ms   torch {rows[-1]['torch_ms']:9.2f} ms   ratio {rows[-1]['ratio']:5.2f}", flush=True)
    naive = bench_naive(conv, device, max(3, repeats // 3), batch=4 if quick else 8)
    ratios = [row["ratio"] for row in rows]
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "impl": os.environ.get("LABS_IMPL", "labs"),
        "quick": quick,
        "repeats": repeats,
        "created": utc_timestamp(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "note": (
            "one step = forward + backward; ours = conv2d + conv2d_backward, torch = F.conv2d + autograd; "
            "repetitions interleaved with rotating order, medians reported, so load from other processes "
            "slows both sides alike and the ratio stays fair even when absolute times do not"
        ),
        "layers": rows,
        "geometric_mean_ratio": round(statistics.geometric_mean(ratios), 2),
        "worst_ratio": max(ratios),
        "naive": naive,
    }


def print_table(result: dict) -> None:
    print(f"\n{result['device']} ({result['device_name']}), torch {result['torch']}, {result['threads']} threads, "
          f"implementation {result['impl']}, medians of {result['repeats']} interleaved repeats")
    print(f"{'layer':<15}{'input':<20}{'weight':<20}{'ours ms':>10}{'torch ms':>10}{'ratio':>7}")
    for row in result["layers"]:
        print(f"{row['layer']:<15}{str(tuple(row['input'])):<20}{str(tuple(row['weight'])):<20}"
              f"{row['ours_ms']:>10.2f}{row['torch_ms']:>10.2f}{row['ratio']:>7.2f}")
    print(f"geometric mean ratio {result['geometric_mean_ratio']}, worst {result['worst_ratio']}")
    n = result["naive"]
    print(f"{n['layer']} on {tuple(n['input'])}: naive {n['naive_ms']:.1f} ms, vectorized {n['vectorized_ms']:.2f} ms, "
          f"torch {n['torch_ms']:.2f} ms (naive / vectorized = {n['naive_over_vectorized']}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches and few repeats; prints, saves nothing unless --out")
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all", help="default: CPU, and CUDA when available")
    parser.add_argument("--impl", choices=("labs", "solutions"), default="solutions", help="whose conv.py to time (default: solutions)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per layer (default 15, quick 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=None, help=f"folder for conv-<device>.json (default {RESULTS_DIR.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ["LABS_IMPL"] = args.impl
    import labs

    labs.use_implementation(args.impl)
    from labs import conv

    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            parser.error("--device cuda: no CUDA GPU here")
    repeats = args.repeats or (3 if args.quick else 15)
    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS_DIR)
    for device in devices:
        print(f"benchmarking on {device} ...", flush=True)
        result = run(conv, device, args.quick, repeats)
        print_table(result)
        if out_dir is not None:
            save_json(out_dir / f"conv-{device.type}.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
