"""AlexNet training throughput on one GPU: the fp32 eager baseline beside the best configuration,
and beside torchvision's AlexNet under the same configuration.

    python benchmarks/bench_alexnet_throughput.py               # on a CUDA GPU: saves the results
    python benchmarks/bench_alexnet_throughput.py --all         # also bf16 alone and bf16 + channels_last
    python benchmarks/bench_alexnet_throughput.py --profile     # also the top 15 kernels of the best configuration
    python benchmarks/bench_alexnet_throughput.py --cpu-smoke   # anywhere: a tiny run that checks the code, saves nothing

One training step = normalise a uint8 batch already on the GPU, forward, cross-entropy,
backward, SGD with momentum. Synthetic 3x227x227 images (the input AlexNet's conv1 arithmetic
needs, see notebook 04) with 1,000 classes, so the data pipeline costs nothing and the number
measures the model. Configurations:

    baseline   fp32, eager, NCHW, batch --batch (PyTorch's defaults: cuDNN may use TF32 for
               convolutions, matrix products stay fp32)
    best       bf16 autocast + channels_last + torch.compile + fused SGD, batch --best-batch

The peer: every configuration also times `torchvision.models.alexnet` (same batch, precision,
layout, compilation and optimizer), interleaved with ours (ours, torchvision, torchvision,
ours, ...) so that load on the machine slows both alike; "ours / torchvision" is the ratio
of step times (above 1: ours is slower). The two are not the same network: torchvision's is
the single-tower variant of Krizhevsky's 2014 "one weird trick" paper (64-192-384-256-256
kernels, no LRN, no groups), ours the 2012 paper's (96-256-384-384-256, two towers, LRN), so
each side's forward GFLOP per image is reported beside the times.

Timing: cudnn.benchmark on; warm-up steps first (compilation, cuDNN's algorithm search and the
caching allocator all happen there and are not timed), then --steps steps between two CUDA
events after a synchronisation; the median of --repeats such windows is reported.

--profile: torch.profiler over a few steps of the best configuration, ours and torchvision's;
the key_averages tables (top 15 by self CUDA time, by self CPU time on CPU) are saved beside
the JSON as alexnet-throughput-<gpu name>-profile.txt.

Target on one H100: best >= 4x baseline and >= 25,000 images/s.
Results: benchmarks/results/alexnet-throughput-<gpu name>.json (never written for CPU runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
from reporting import REPO_ROOT, RESULTS_DIR, device_name, device_slug, save_json, utc_timestamp

os.environ.setdefault("LABS_IMPL", "solutions")  # the reference model unless told otherwise
TARGET_SPEEDUP, TARGET_IMAGES_PER_S = 4.0, 25_000
MODELS = ("ours", "torchvision")
PROFILE_ROWS = 15


def build(which: str, device: torch.device, size: int, channels_last: bool, compiled: bool, fused: bool, compile_mode: str | None):
    """(model to call, optimizer) for "ours" (the lab's AlexNet, groups=2) or "torchvision" (torchvision.models.alexnet)."""
    from labs import models
    from labs.provided.seeding import seed_everything

    seed_everything(0)
    if which == "ours":
        net = models.AlexNet(num_classes=1000, groups=2, small_inputs=size < 67)
    else:
        import torchvision

        net = torchvision.models.alexnet(weights=None, num_classes=1000)
    net = net.to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, **({"fused": True} if fused else {}))
    if compiled:
        from labs.provided.training import compile_model

        return compile_model(net, log=lambda line: print(f"  {which}: {line}"), mode=compile_mode), optimizer
    return net, optimizer


def forward_gflop(which: str, size: int) -> float:
    """Forward GFLOP for one image (a multiply-add counts 2), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    net, _ = build(which, torch.device("cpu"), size, False, False, False, None)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    return round(counter.get_total_flops() / 1e9, 3)


def measure(device: torch.device, name: str, batch: int, size: int, bf16: bool, channels_last: bool, compiled: bool,
            fused: bool, steps: int, warmup: int, repeats: int, compile_mode: str | None) -> dict:
    """Images per second of one configuration, ours and torchvision's (medians of `repeats` interleaved windows)."""
    from labs.provided import training
    from labs.provided.recipes.alexnet import IMAGENET_MEAN, IMAGENET_STD, normalizer, synthetic_data
    from labs.provided.seeding import seed_everything

    generator = seed_everything(0)
    images, labels = synthetic_data(batch, size, 1000, device, generator)  # (B, 3, size, size) uint8 on the device
    prepare = normalizer(IMAGENET_MEAN, IMAGENET_STD)
    runs = {which: build(which, device, size, channels_last, compiled, fused, compile_mode) for which in MODELS}
    windows = {which: [] for which in MODELS}
    for repeat in range(repeats):
        for which in MODELS if repeat % 2 == 0 else MODELS[::-1]:  # ours, torchvision, torchvision, ours, ...
            model, optimizer = runs[which]
            stats = training.training_throughput(model, optimizer, images, labels, steps=steps, warmup=warmup if repeat == 0 else 1,
                                                 prepare=prepare, bf16=bf16, channels_last=channels_last)
            windows[which].append(stats["images_per_s"])
    ours, peer = (statistics.median(windows[which]) for which in MODELS)
    result = {
        "name": name, "batch_size": batch, "image_size": size, "bf16": bf16, "channels_last": channels_last,
        "compile": compiled, "compile_mode": compile_mode if compiled else None, "fused_sgd": fused,
        "images_per_s": round(ours, 1), "windows_images_per_s": [round(w, 1) for w in windows["ours"]],
        "step_ms": round(1000 * batch / ours, 3),
        "torchvision_images_per_s": round(peer, 1), "torchvision_windows_images_per_s": [round(w, 1) for w in windows["torchvision"]],
        "torchvision_step_ms": round(1000 * batch / peer, 3),
        "ours_over_torchvision": round(peer / ours, 3),  # step time ratio: above 1, ours is slower
    }
    if device.type == "cuda":
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)  # both models together
        torch.cuda.reset_peak_memory_stats(device)
    del runs, images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def profile(device: torch.device, batch: int, size: int, bf16: bool, channels_last: bool, compiled: bool, fused: bool,
            warmup: int, compile_mode: str | None, steps: int = 5) -> str:
    """torch.profiler over `steps` steps of one configuration, ours then torchvision's: the top kernels as text tables."""
    from torch.profiler import ProfilerActivity

    from labs.provided import training
    from labs.provided.recipes.alexnet import IMAGENET_MEAN, IMAGENET_STD, normalizer, synthetic_data
    from labs.provided.seeding import seed_everything

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"  # newer torch reads "cuda" as "device" here
    images, labels = synthetic_data(batch, size, 1000, device, seed_everything(0))  # (B, 3, size, size) uint8
    prepare = normalizer(IMAGENET_MEAN, IMAGENET_STD)
    sections = []
    for which in MODELS:
        model, optimizer = build(which, device, size, channels_last, compiled, fused, compile_mode)
        training.training_throughput(model, optimizer, images, labels, steps=1, warmup=warmup, prepare=prepare, bf16=bf16, channels_last=channels_last)
        with torch.profiler.profile(activities=activities) as profiler:
            training.training_throughput(model, optimizer, images, labels, steps=steps, warmup=0, prepare=prepare, bf16=bf16, channels_last=channels_last)
        table = profiler.key_averages().table(sort_by=sort_by, row_limit=PROFILE_ROWS)
        sections.append(f"== {which}: {steps} training steps, batch {batch} at {size}x{size}, bf16={bf16}, channels_last={channels_last}, "
                        f"compile={compiled}; top {PROFILE_ROWS} by {sort_by}\n{table}")
        del model, optimizer
    return "\n\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="baseline batch size (default: 256)")
    parser.add_argument("--best-batch", type=int, default=512, help="batch size of the best configuration (default: 512)")
    parser.add_argument("--size", type=int, default=227, help="image side (default: 227)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per window (default: 30)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10; compiled runs need them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported (default: 3)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of the best configuration (default: default; try max-autotune-no-cudagraphs)")
    parser.add_argument("--all", action="store_true", help="also time bf16 and bf16 + channels_last without compile")
    parser.add_argument("--profile", action="store_true", help=f"also profile the best configuration: top {PROFILE_ROWS} kernels, saved beside the JSON")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run (64x64, batch 4, 2 steps) to check the code; saves nothing")
    args = parser.parse_args(argv)

    from labs.provided.device import describe

    if args.cpu_smoke:
        device = torch.device("cpu")
        size, batch, best_batch, steps, warmup, repeats, compile_mode = 64, 4, 4, 2, 1, 1, None
        print("CPU smoke test: checks that every configuration runs; the numbers are not GPU results and are not saved.")
    elif not torch.cuda.is_available():
        print("error: no CUDA GPU here. This benchmark measures GPU throughput; run it on a GPU machine, "
              "or use --cpu-smoke to check the code on this one.", file=sys.stderr)
        return 1
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        size, batch, best_batch, steps, warmup, repeats, compile_mode = args.size, args.batch, args.best_batch, args.steps, args.warmup, args.repeats, args.compile_mode
    cuda = device.type == "cuda"

    configs = [("fp32 eager (baseline)", batch, False, False, False, False)]
    if args.all:
        configs += [("bf16", batch, True, False, False, False), ("bf16 + channels_last", batch, True, True, False, False)]
    # On CPU, torch.compile needs a C++ toolchain and minutes; the smoke test checks the rest of the best path.
    best = "bf16 + channels_last + compile (best)" if cuda else "bf16 + channels_last (best, compile skipped on CPU)"
    configs += [(best, best_batch, True, True, cuda, cuda)]
    gflop = {which: forward_gflop(which, size) for which in MODELS}
    print(f"forward GFLOP per {size}x{size} image: ours {gflop['ours']:.3f}, torchvision {gflop['torchvision']:.3f}"
          + ("  (ours uses small_inputs below 67x67; torchvision does not)" if size < 67 else ""))
    results = []
    for name, b, bf16, channels_last, compiled, fused in configs:
        result = measure(device, name, b, size, bf16, channels_last, compiled, fused, steps, warmup, repeats, compile_mode)
        results.append(result)
        print(f"{name:<52} batch {b:>4}  ours {result['images_per_s']:>9,.0f} images/s {result['step_ms']:8.2f} ms/step  "
              f"torchvision {result['torchvision_images_per_s']:>9,.0f} images/s  ours / torchvision {result['ours_over_torchvision']:.2f}x")
    speedup = results[-1]["images_per_s"] / results[0]["images_per_s"]
    print(f"best / baseline: {speedup:.2f}x" + (f"  (targets on an H100: >= {TARGET_SPEEDUP:.0f}x and >= {TARGET_IMAGES_PER_S:,} images/s)" if cuda else ""))
    tables = None
    if args.profile:
        _, b, bf16, channels_last, compiled, fused = configs[-1]
        tables = profile(device, b, size, bf16, channels_last, compiled, fused, warmup, compile_mode, steps=2 if args.cpu_smoke else 5)
        print(tables)
    if not cuda:
        print("(CPU smoke test: nothing saved)")
        return 0

    report = {
        "benchmark": "alexnet-throughput",
        "device": describe(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "allow_tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "data": f"synthetic uint8 3x{size}x{size} resident on the GPU, 1000 classes",
        "timing": f"cuda events, {warmup} warm-up steps untimed, median of {repeats} windows of {steps} steps",
        "peer": "torchvision.models.alexnet(weights=None), same batch, precision, layout, compilation and optimizer; "
                "timed interleaved with ours; ours_over_torchvision = our step time / torchvision's",
        "forward_gflop_per_image": gflop,
        "configs": results,
        "speedup": round(speedup, 2),
        "ours_over_torchvision": {result["name"]: result["ours_over_torchvision"] for result in results},
        "targets": {"speedup": TARGET_SPEEDUP, "images_per_s": TARGET_IMAGES_PER_S},
        "meets_targets": speedup >= TARGET_SPEEDUP and results[-1]["images_per_s"] >= TARGET_IMAGES_PER_S,
        "created": utc_timestamp(),
    }
    save_json(RESULTS_DIR / f"alexnet-throughput-{device_slug(device)}.json", report)
    if tables is not None:
        path = RESULTS_DIR / f"alexnet-throughput-{device_slug(device)}-profile.txt"
        path.write_text(f"{describe(device)}, torch {torch.__version__}, {utc_timestamp()}\n\n{tables}\n")
        print(f"saved {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
