"""AlexNet training throughput on one GPU: the paper's model made fast, beside its fp32 baseline and
torchvision's AlexNet at its best, all in one run.

    python benchmarks/bench_alexnet_throughput.py               # on a CUDA GPU: every configuration below, saved
    python benchmarks/bench_alexnet_throughput.py --only paper,torchvision   # a subset, by key
    python benchmarks/bench_alexnet_throughput.py --all         # also bf16 and bf16 + channels_last without compile
    python benchmarks/bench_alexnet_throughput.py --no-profile  # without the profiler's top kernels
    python benchmarks/bench_alexnet_throughput.py --cpu-smoke   # anywhere: a tiny run that checks the code, saves nothing

One training step = normalise a uint8 batch already on the GPU, forward, cross-entropy,
backward, SGD with momentum. Synthetic images with 1,000 classes, so the data pipeline costs
nothing and the number measures the model. "paper" is the lab's AlexNet as in Krizhevsky et al.
2012: 3x227x227 inputs, two towers (groups=2), local response normalisation (LRN) after conv1
and conv2. Configurations (key: what):

    torchvision         torchvision.models.alexnet, bf16 autocast + channels_last + torch.compile
                        + fused SGD, batch --best-batch at --torchvision-size (224): its best
    baseline            paper, fp32, eager, NCHW, batch --batch, LRN by F.local_response_norm:
                        PyTorch's defaults (cuDNN may use TF32 for convolutions)
    paper               paper, bf16 + channels_last + compile + fused SGD, batch --best-batch,
                        the fast LRN (labs/provided/fast_lrn.py: one GEMM with a band matrix)
    paper_torch_lrn     paper with the LRN by F.local_response_norm: what the fast LRN saves
    paper_no_lrn        paper without its two LRN layers (identities): what the LRN still costs
    paper_dense_towers  paper with conv2, conv4, conv5 as two dense convolutions each
                        (AlexNet(tower_convs="dense"): same weights, other cuDNN kernels)
    paper_cuda_graphs   paper compiled with mode=--graphs-mode ("reduce-overhead": CUDA graphs)

Ratios (printed and saved): paper / torchvision, LRN / no LRN, torch LRN / fast LRN, dense /
grouped towers and CUDA graphs / default compile are ratios of time per image (above 1: the
first is slower); paper / baseline is a speedup (images per second, above 1: paper is faster).
The two networks are not the same: torchvision's is the single-tower variant of Krizhevsky's
2014 "one weird trick" paper (64-192-384-256-256 kernels, no LRN, no groups), so each side's
forward GFLOP per image is reported beside the times.

Timing: cudnn.benchmark on; every model is built first, then all are timed in rounds,
interleaved (a, b, c, c, b, a, ...) so that load on the machine slows all alike. The first
round starts with --warmup untimed steps (compilation, cuDNN's algorithm search, CUDA graph
capture and the caching allocator happen there), later rounds with one; each window is --steps
steps between two CUDA events after a synchronisation; the median of --repeats windows is
reported. A configuration that fails is reported with its error and the others still run.

Profiler: after timing, torch.profiler over a few steps of "paper" and "torchvision" (the
models already compiled and warm); the top 15 kernels by self CUDA time (self CPU time on CPU)
go into the JSON and, as key_averages tables, beside it as alexnet-throughput-<gpu>-profile.txt.

Target on one H100: paper >= 4x baseline and >= 25,000 images/s.
Results: benchmarks/results/alexnet-throughput-<gpu name>.json (never written for CPU runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import traceback
from dataclasses import dataclass

import torch
from reporting import REPO_ROOT, RESULTS_DIR, device_name, device_slug, save_json, utc_timestamp

os.environ.setdefault("LABS_IMPL", "solutions")  # the reference model unless told otherwise
TARGET_SPEEDUP, TARGET_IMAGES_PER_S = 4.0, 25_000
PROFILE_ROWS = 15
PROFILED = ("paper", "torchvision")


@dataclass(frozen=True)
class Config:
    """One timed configuration: which model, how it is built and how it runs."""

    key: str
    label: str
    model: str  # "paper" (the lab's AlexNet, groups=2) or "torchvision"
    batch: int
    size: int  # image side
    bf16: bool
    channels_last: bool
    compile_mode: str | None  # torch.compile mode; None: eager
    lrn: str = "fast"  # paper only: "fast" (labs.provided.fast_lrn), "torch" (F.local_response_norm) or "none"
    tower_convs: str = "grouped"  # paper only: "grouped" or "dense"


def configurations(args: argparse.Namespace, cuda: bool) -> list[Config]:
    """The configurations of one run, in the order they are printed."""
    compile_mode = args.compile_mode if cuda else None  # on CPU, torch.compile needs a C++ toolchain and minutes
    graphs_mode = args.graphs_mode if cuda else None
    skipped = "" if cuda else " (compile skipped on CPU)"
    best = "bf16 + channels_last + compile"
    paper = Config("paper", f"paper, {best}, fast LRN{skipped}", "paper", args.best_batch, args.size, True, True, compile_mode)
    configs = [
        Config("torchvision", f"torchvision, {best}{skipped}", "torchvision", args.best_batch, args.torchvision_size, True, True, compile_mode),
        Config("baseline", "paper, fp32 eager, F.local_response_norm (baseline)", "paper", args.batch, args.size, False, False, None, lrn="torch"),
        paper,
        dataclasses.replace(paper, key="paper_torch_lrn", label=f"paper, {best}, F.local_response_norm{skipped}", lrn="torch"),
        dataclasses.replace(paper, key="paper_no_lrn", label=f"paper, {best}, no LRN{skipped}", lrn="none"),
        dataclasses.replace(paper, key="paper_dense_towers", label=f"paper, {best}, fast LRN, dense towers{skipped}", tower_convs="dense"),
        dataclasses.replace(paper, key="paper_cuda_graphs", label=f"paper, {best} ({args.graphs_mode}), fast LRN{skipped}",
                            compile_mode=graphs_mode),
    ]
    if args.all:
        configs += [
            Config("paper_bf16", "paper, bf16 eager, fast LRN", "paper", args.batch, args.size, True, False, None),
            Config("paper_bf16_channels_last", "paper, bf16 + channels_last eager, fast LRN", "paper", args.batch, args.size, True, True, None),
        ]
    if args.only:
        keys = {key.strip() for key in args.only.split(",")}
        unknown = keys - {config.key for config in configs}
        if unknown:
            raise SystemExit(f"error: --only names unknown configurations {sorted(unknown)}; known: {[c.key for c in configs]}")
        configs = [config for config in configs if config.key in keys]
    return configs


def build(config: Config, device: torch.device):
    """(model to call, optimizer) for one configuration, on the device."""
    from torch import nn

    from labs import models
    from labs.provided.seeding import seed_everything

    seed_everything(0)
    if config.model == "paper":
        net = models.AlexNet(num_classes=1000, groups=2, small_inputs=config.size < 67, tower_convs=config.tower_convs)
        for name in ("norm1", "norm2"):
            if config.lrn == "none":
                setattr(net, name, nn.Identity())
            else:
                getattr(net, name).impl = config.lrn  # explicit, so that the CPU smoke test runs the fast LRN too
    else:
        import torchvision

        net = torchvision.models.alexnet(weights=None, num_classes=1000)
    net = net.to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    fused = device.type == "cuda" and config.compile_mode is not None
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, **({"fused": True} if fused else {}))
    if config.compile_mode is not None:
        from labs.provided.training import compile_model

        return compile_model(net, log=lambda line: print(f"  {config.key}: {line}"), mode=config.compile_mode), optimizer
    return net, optimizer


def forward_gflop(model: str, size: int) -> float:
    """Forward GFLOP for one image (a multiply-add counts 2), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    net, _ = build(Config("gflop", "", model, 1, size, False, False, None, lrn="torch"), torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    return round(counter.get_total_flops() / 1e9, 3)


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:500]


def measure_all(configs: list[Config], device: torch.device, steps: int, warmup: int, repeats: int, strict: bool):
    """Images per second of every configuration (medians of `repeats` interleaved windows).

    Returns ({key: result}, {key: (model, optimizer, images, labels)}) so that the profiler can
    reuse the compiled, warm models. A configuration that fails gets {"error": ...} unless
    `strict` (the CPU smoke test), where the error stops the run.
    """
    from labs.provided import training
    from labs.provided.recipes.alexnet import IMAGENET_MEAN, IMAGENET_STD, normalizer, synthetic_data
    from labs.provided.seeding import seed_everything

    prepare = normalizer(IMAGENET_MEAN, IMAGENET_STD)
    batches: dict[tuple[int, int], tuple] = {}
    runs, errors = {}, {}
    for config in configs:
        if (config.batch, config.size) not in batches:  # (B, 3, size, size) uint8 and (B,) labels, on the device
            batches[config.batch, config.size] = synthetic_data(config.batch, config.size, 1000, device, seed_everything(0))
        try:
            runs[config.key] = (*build(config, device), *batches[config.batch, config.size])
        except Exception as error:  # noqa: BLE001 - one failed configuration must not lose the others
            if strict:
                raise
            errors[config.key] = _error(error)
            traceback.print_exc()
    windows: dict[str, list[float]] = {config.key: [] for config in configs}
    for repeat in range(repeats):
        for config in configs if repeat % 2 == 0 else configs[::-1]:  # a, b, c, c, b, a, ...
            if config.key in errors:
                continue
            model, optimizer, images, labels = runs[config.key]
            try:
                stats = training.training_throughput(model, optimizer, images, labels, steps=steps, warmup=warmup if repeat == 0 else 1,
                                                     prepare=prepare, bf16=config.bf16, channels_last=config.channels_last)
            except Exception as error:  # noqa: BLE001
                if strict:
                    raise
                errors[config.key] = _error(error)
                traceback.print_exc()
                del runs[config.key]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            windows[config.key].append(stats["images_per_s"])
    results = {}
    for config in configs:
        result = {"key": config.key, "name": config.label, "model": config.model, "batch_size": config.batch, "image_size": config.size,
                  "bf16": config.bf16, "channels_last": config.channels_last, "compile": config.compile_mode is not None,
                  "compile_mode": config.compile_mode, "fused_sgd": device.type == "cuda" and config.compile_mode is not None}
        if config.model == "paper":
            result.update(lrn=config.lrn, tower_convs=config.tower_convs)
        if config.key in errors:
            result["error"] = errors[config.key]
        else:
            images_per_s = statistics.median(windows[config.key])
            result.update(images_per_s=round(images_per_s, 1), windows_images_per_s=[round(w, 1) for w in windows[config.key]],
                          step_ms=round(1000 * config.batch / images_per_s, 3))
        results[config.key] = result
    return results, runs


def _self_time(event, cuda: bool) -> float:
    """An event's self time in microseconds: on the GPU (newer torch calls it "device") or the CPU."""
    if not cuda:
        return event.self_cpu_time_total
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)


def profile(config: Config, run: tuple, device: torch.device, steps: int) -> tuple[str, list[dict]]:
    """torch.profiler over `steps` steps of one warm configuration: its key_averages table and its top kernels."""
    from torch.profiler import ProfilerActivity

    from labs.provided import training
    from labs.provided.recipes.alexnet import IMAGENET_MEAN, IMAGENET_STD, normalizer

    model, optimizer, images, labels = run
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"  # newer torch reads "cuda" as "device" here
    prepare = normalizer(IMAGENET_MEAN, IMAGENET_STD)
    with torch.profiler.profile(activities=activities) as profiler:
        training.training_throughput(model, optimizer, images, labels, steps=steps, warmup=0, prepare=prepare, bf16=config.bf16,
                                     channels_last=config.channels_last)
    averages = profiler.key_averages()
    table = profiler.key_averages().table(sort_by=sort_by, row_limit=PROFILE_ROWS)
    # On CUDA only kernels (and memcpy/memset) have self device time; on CPU every op has self CPU time.
    events = sorted((e for e in averages if _self_time(e, cuda) > 0), key=lambda e: _self_time(e, cuda), reverse=True)
    total = sum(_self_time(e, cuda) for e in events) or 1.0
    rows = [{"name": e.key, "calls_per_step": round(e.count / steps, 2), "self_ms_per_step": round(_self_time(e, cuda) / 1000 / steps, 4),
             "percent": round(100 * _self_time(e, cuda) / total, 2)} for e in events[:PROFILE_ROWS]]
    header = (f"== {config.key}: {config.label}; {steps} training steps, batch {config.batch} at {config.size}x{config.size}; "
              f"top {PROFILE_ROWS} by {sort_by}")
    return f"{header}\n{table}", rows


def ratios(results: dict[str, dict]) -> dict[str, float | None]:
    """The run's comparisons: time per image of a over b (above 1: a is slower); the baseline's as a speedup."""
    speed = {key: result.get("images_per_s") for key, result in results.items()}

    def time_ratio(a: str, b: str) -> float | None:
        return round(speed[b] / speed[a], 3) if speed.get(a) and speed.get(b) else None

    speedup = round(speed["paper"] / speed["baseline"], 3) if speed.get("paper") and speed.get("baseline") else None
    return {
        "paper_over_torchvision": time_ratio("paper", "torchvision"),
        "paper_speedup_over_fp32_baseline": speedup,
        "lrn_over_no_lrn": time_ratio("paper", "paper_no_lrn"),
        "torch_lrn_over_fast_lrn": time_ratio("paper_torch_lrn", "paper"),
        "dense_over_grouped_towers": time_ratio("paper_dense_towers", "paper"),
        "cuda_graphs_over_default_compile": time_ratio("paper_cuda_graphs", "paper"),
    }


RATIO_TEXT = {
    "paper_over_torchvision": "paper / torchvision, time per image (above 1: paper slower)",
    "paper_speedup_over_fp32_baseline": "paper / fp32 baseline, images per second (speedup)",
    "lrn_over_no_lrn": "fast LRN / no LRN, time per image (what the LRN costs)",
    "torch_lrn_over_fast_lrn": "F.local_response_norm / fast LRN, time per image",
    "dense_over_grouped_towers": "dense / grouped towers, time per image",
    "cuda_graphs_over_default_compile": "CUDA graphs / default compile, time per image",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="baseline batch size (default: 256)")
    parser.add_argument("--best-batch", type=int, default=512, help="batch size of the compiled configurations (default: 512)")
    parser.add_argument("--size", type=int, default=227, help="image side of the paper's model (default: 227)")
    parser.add_argument("--torchvision-size", type=int, default=224, help="image side of torchvision's AlexNet (default: 224)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per window (default: 30)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10; compiled runs need them)")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows; the median is reported (default: 3)")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of the compiled configurations (default: default)")
    parser.add_argument("--graphs-mode", default="reduce-overhead", help="torch.compile mode of paper_cuda_graphs (default: reduce-overhead; "
                        "or max-autotune: slower to compile)")
    parser.add_argument("--only", default="", help="comma-separated configuration keys to run (default: all)")
    parser.add_argument("--all", action="store_true", help="also time the paper's model in bf16 and bf16 + channels_last without compile")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiler (the top kernels of paper and torchvision)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run (64x64, batch 4, 2 steps, no compile) to check the code; saves nothing")
    args = parser.parse_args(argv)

    from labs.provided.device import describe

    if args.cpu_smoke:
        device = torch.device("cpu")
        args.size, args.torchvision_size, args.batch, args.best_batch = 64, 64, 4, 4
        steps, warmup, repeats = 2, 1, 1
        print("CPU smoke test: checks that every configuration runs; the numbers are not GPU results and are not saved.")
    elif not torch.cuda.is_available():
        print("error: no CUDA GPU here. This benchmark measures GPU throughput; run it on a GPU machine, "
              "or use --cpu-smoke to check the code on this one.", file=sys.stderr)
        return 1
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        steps, warmup, repeats = args.steps, args.warmup, args.repeats
    cuda = device.type == "cuda"
    configs = configurations(args, cuda)

    gflop = {"paper": forward_gflop("paper", args.size), "torchvision": forward_gflop("torchvision", args.torchvision_size)}
    print(f"forward GFLOP per image: paper {gflop['paper']:.3f} at {args.size}x{args.size}, torchvision {gflop['torchvision']:.3f} "
          f"at {args.torchvision_size}x{args.torchvision_size}" + ("  (paper uses small_inputs below 67x67)" if args.size < 67 else ""))
    results, runs = measure_all(configs, device, steps, warmup, repeats, strict=not cuda)
    for config in configs:
        result = results[config.key]
        figures = "FAILED" if "error" in result else f"{result['images_per_s']:>9,.0f} images/s {result['step_ms']:9.2f} ms/step"
        print(f"{config.key:<19} batch {config.batch:>4} at {config.size:>3}  {figures}  {config.label}")
        if "error" in result:
            print(f"{'':<19} {result['error']}")
    comparisons = ratios(results)
    for key, value in comparisons.items():
        print(f"  {RATIO_TEXT[key]:<60} " + (f"{value:.2f}x" if value is not None else "n/a (a side is missing or failed)"))
    if cuda:
        print(f"  targets on an H100: paper >= {TARGET_SPEEDUP:.0f}x the baseline and >= {TARGET_IMAGES_PER_S:,} images/s")

    tables, top_kernels = [], {}
    if not args.no_profile:
        for config in configs:
            if config.key in PROFILED and config.key in runs:
                try:
                    table, rows = profile(config, runs[config.key], device, steps=2 if args.cpu_smoke else 5)
                except Exception as error:  # noqa: BLE001
                    if not cuda:
                        raise
                    top_kernels[config.key] = {"error": _error(error)}
                    continue
                tables.append(table)
                top_kernels[config.key] = rows
                print(f"top kernels of {config.key} (self time per step):")
                for row in rows[:5]:
                    print(f"  {row['self_ms_per_step']:9.3f} ms {row['percent']:5.1f}%  {row['name'][:100]}")
    failed = [key for key, result in results.items() if "error" in result]
    if not cuda:
        print("(CPU smoke test: nothing saved)")
        return 1 if failed else 0

    paper = results.get("paper", {})
    speedup = comparisons["paper_speedup_over_fp32_baseline"]
    report = {
        "benchmark": "alexnet-throughput",
        "device": describe(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "allow_tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "data": f"synthetic uint8 3x{args.size}x{args.size} (torchvision: {args.torchvision_size}x{args.torchvision_size}) resident on the GPU, "
                "1000 classes",
        "timing": f"cuda events, {warmup} warm-up steps untimed, median of {repeats} interleaved windows of {steps} steps",
        "ratios_note": "x_over_y: time per image of x / of y (above 1: x is slower); paper_speedup_over_fp32_baseline: images/s of "
                       "paper / of the baseline",
        "forward_gflop_per_image": gflop,
        "configs": list(results.values()),
        "ratios": comparisons,
        "max_memory_gib_all_models": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),  # every model built at once
        "profile_top_kernels": top_kernels,
        "targets": {"speedup": TARGET_SPEEDUP, "images_per_s": TARGET_IMAGES_PER_S},
        "meets_targets": bool(speedup is not None and speedup >= TARGET_SPEEDUP and paper.get("images_per_s", 0) >= TARGET_IMAGES_PER_S),
        "failed": failed,
        "created": utc_timestamp(),
    }
    save_json(RESULTS_DIR / f"alexnet-throughput-{device_slug(device)}.json", report)
    if tables:
        path = RESULTS_DIR / f"alexnet-throughput-{device_slug(device)}-profile.txt"
        path.write_text(f"{describe(device)}, torch {torch.__version__}, {utc_timestamp()}\n\n" + "\n\n".join(tables) + "\n")
        print(f"saved {path.relative_to(REPO_ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
