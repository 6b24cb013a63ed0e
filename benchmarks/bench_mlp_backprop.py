"""One training step of lab 1's hand-written MLP against the same MLP differentiated by autograd.

    python benchmarks/bench_mlp_backprop.py            # CPU, and CUDA when there is a GPU
    python benchmarks/bench_mlp_backprop.py --quick    # fewer repetitions, for a smoke test
    python benchmarks/bench_mlp_backprop.py --threads 1   # steadier on a shared, busy CPU

Both steps do the same work on the same parameters, sizes and dtype: forward pass, mean
cross-entropy, gradients of every W_l and b_l, and an SGD update that returns new tensors.
  hand:     mlp_forward, cross_entropy, cross_entropy_grad, mlp_backward, sgd_step (labs.mlp)
  autograd: the same affine maps and ReLUs written with torch ops, F.cross_entropy,
            torch.autograd.grad, then W - lr dW.
Repetitions are interleaved (hand, autograd, hand, autograd, ...) so that a change in machine
load affects both, and each figure is a median. Before timing, the hand-written gradients are
checked against autograd's in float64 (to 1e-10). Results go to
benchmarks/results/mlp-backprop-<device>.json. The exercise module is the reference
(solutions) unless --impl labs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from reporting import RESULTS_DIR, save_json


def autograd_step(params, X, y, lr):
    """Forward with torch ops, backward by autograd, then SGD: returns (new params, loss)."""
    leaves = [(W.detach().requires_grad_(), b.detach().requires_grad_()) for W, b in params]
    A = X
    for W, b in leaves[:-1]:
        A = torch.relu(A @ W.T + b)  # (N, n_{l-1}) @ (n_{l-1}, n_l) + (n_l,) -> (N, n_l)
    W, b = leaves[-1]
    loss = F.cross_entropy(A @ W.T + b, y)  # (N, n_L) logits -> ()
    grads = torch.autograd.grad(loss, [t for pair in leaves for t in pair])
    with torch.no_grad():
        new = [(W - lr * grads[2 * i], b - lr * grads[2 * i + 1]) for i, (W, b) in enumerate(leaves)]
    return new, loss.detach()


def hand_step(mlp, params, X, y, lr):
    """The lab's training step: no autograd anywhere. Returns (new params, loss)."""
    logits, cache = mlp.mlp_forward(params, X)  # (N, n_L)
    loss = mlp.cross_entropy(logits, y)
    grads = mlp.mlp_backward(params, cache, mlp.cross_entropy_grad(logits, y))
    return mlp.sgd_step(params, grads, lr), loss


def check_gradients(mlp, sizes, batch_size, device) -> float:
    """Largest difference between hand-written and autograd gradients, in float64; raises above 1e-10."""
    g = torch.Generator().manual_seed(1)
    params = [(W.to(device), b.to(device)) for W, b in mlp.init_mlp(sizes, g, dtype=torch.float64)]
    X = torch.randn(batch_size, sizes[0], generator=g, dtype=torch.float64).to(device)
    y = torch.randint(0, sizes[-1], (batch_size,), generator=g).to(device)
    logits, cache = mlp.mlp_forward(params, X)
    hand = mlp.mlp_backward(params, cache, mlp.cross_entropy_grad(logits, y))
    leaves = [t.clone().requires_grad_() for pair in params for t in pair]
    A = X
    for i in range(len(params)):
        Z = A @ leaves[2 * i].T + leaves[2 * i + 1]  # (N, n_l)
        A = torch.relu(Z) if i < len(params) - 1 else Z
    auto = torch.autograd.grad(F.cross_entropy(A, y), leaves)
    worst = 0.0
    for mine, theirs in zip([t for pair in hand for t in pair], auto):
        error = float(((mine - theirs).abs() / (1.0 + theirs.abs())).max())
        worst = max(worst, error)
    if worst > 1e-10:
        raise AssertionError(f"hand-written gradients differ from autograd's by {worst:.3g} (allowed 1e-10) in float64")
    return worst


def time_steps(step, params, sync, inner: int) -> float:
    """Seconds per step, averaged over `inner` consecutive steps (parameters carried along)."""
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        params, _ = step(params)
    sync()
    return (time.perf_counter() - start) / inner


def bench_device(mlp, device: torch.device, sizes, batch_size, dtype, repeats: int, inner: int) -> dict:
    from labs.provided.device import describe

    worst = check_gradients(mlp, sizes, 16, device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    params = [(W.to(device), b.to(device)) for W, b in mlp.init_mlp(sizes, g, dtype=dtype)]
    X = torch.randn(batch_size, sizes[0], generator=g, dtype=dtype).to(device)
    y = torch.randint(0, sizes[-1], (batch_size,), generator=g).to(device)
    lr = 0.01
    steps = {"hand": lambda p: hand_step(mlp, p, X, y, lr), "autograd": lambda p: autograd_step(p, X, y, lr)}
    for step in steps.values():  # warm up: allocator, kernels, autograd's first-call setup
        time_steps(step, params, sync, max(2, inner // 2))
    times = {name: [] for name in steps}
    for r in range(repeats):
        order = list(steps) if r % 2 == 0 else list(steps)[::-1]  # alternate which goes first
        for name in order:
            times[name].append(time_steps(steps[name], params, sync, inner))
    hand, auto = statistics.median(times["hand"]), statistics.median(times["autograd"])
    return {
        "device": str(device),
        "device_name": describe(device),
        "hand_median_s": hand,
        "autograd_median_s": auto,
        "ratio_hand_over_autograd": hand / auto,
        "hand_all_s": times["hand"],
        "autograd_all_s": times["autograd"],
        "gradient_max_relative_difference_float64": worst,
        "sizes": sizes,
        "batch_size": batch_size,
        "dtype": str(dtype).replace("torch.", ""),
        "repeats": repeats,
        "steps_per_repeat": inner,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_after": os.getloadavg()[0],  # other work on the machine skews CPU timings
        "impl": mlp.__name__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test, not a measurement")
    parser.add_argument("--devices", nargs="+", default=None, help="devices to time (default: cpu, and cuda when available)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 512, 512, 10], help="layer sizes (default: 784 512 512 10)")
    parser.add_argument("--batch-size", type=int, default=128, help="examples per step (default: 128)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--impl", choices=("labs", "solutions"), default="solutions", help="whose exercise code to time (default: solutions)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not write benchmarks/results/")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    import labs

    labs.use_implementation(args.impl)
    from labs import mlp

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    repeats, inner = (5, 5) if args.quick else (21, 20)
    dtype = getattr(torch, args.dtype)
    print(f"MLP {args.sizes}, batch {args.batch_size}, {args.dtype}, {repeats} interleaved repeats of {inner} steps, torch {torch.__version__}")
    print(f"{'device':<34} {'hand (ms)':>10} {'autograd (ms)':>14} {'hand/autograd':>14}")
    for name in devices:
        device = torch.device(name)
        result = bench_device(mlp, device, args.sizes, args.batch_size, dtype, repeats, inner)
        result["quick"] = args.quick
        print(
            f"{result['device_name']:<34} {result['hand_median_s'] * 1e3:>10.3f} {result['autograd_median_s'] * 1e3:>14.3f} "
            f"{result['ratio_hand_over_autograd']:>14.2f}"
        )
        if not args.no_save:
            save_json(RESULTS_DIR / f"mlp-backprop-{device.type}.json", result, prefix="  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
