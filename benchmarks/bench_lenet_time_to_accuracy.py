"""Wall-clock time for LeNet-5 to reach a test accuracy on MNIST (time to accuracy).

    python benchmarks/bench_lenet_time_to_accuracy.py                 # CPU, then CUDA when there is a GPU
    python benchmarks/bench_lenet_time_to_accuracy.py --device cuda   # one device
    python benchmarks/bench_lenet_time_to_accuracy.py --quick         # smoke test: 2 epochs, nothing saved
    python benchmarks/bench_lenet_time_to_accuracy.py --repeats 3     # keep the fastest of 3 identical runs (busy machines)

The recipe is `python -m labs train lenet`'s (ReLU, max pooling, AdamW, one-cycle schedule over
its 12 epochs, random shifts of up to 2 pixels; on CUDA batch 512, bf16 autocast and
channels_last). The test accuracy on the 10,000 official test digits is measured after every
epoch and the clock stops at the first evaluation at or above the target.

The clock covers training and the evaluations, from the first step to the evaluation that
reaches the target; not Python's start-up, reading the files, or moving the tensors to the
device (`setup_seconds` records that). One untimed warm-up step on the device comes first.

Targets: 99.0% on full MNIST (60,000 training digits): under 60 s on a 2-core CPU, under 2 s
on one H100. When the data folder holds only a subset (the course's 5,000-digit mini set),
the target is 97.0% and the results say so (`dataset`, and a file name ending in
`-mnist-5k`): such numbers are not full-MNIST numbers.

Results: benchmarks/results/lenet-time-to-accuracy-<device>[-mnist-<N>k].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from reporting import RESULTS_DIR, device_name, device_slug, save_json, utc_timestamp

os.environ.setdefault("LABS_IMPL", "solutions")  # the reference model unless told otherwise


def run(device: torch.device, target: float | None, max_epochs: int, seed: int, compile_model: bool) -> dict:
    from labs import models
    from labs.provided import training
    from labs.provided.data import load_mnist
    from labs.provided.device import describe
    from labs.provided.recipes import lenet
    from labs.provided.seeding import seed_everything

    setup_start = time.perf_counter()
    X_train, y_train = load_mnist(train=True, download=False)
    X_test, y_test = load_mnist(train=False, download=False)
    full = len(y_train) == 60_000
    target = target if target is not None else (0.99 if full else 0.97)
    dataset = "MNIST (60,000 training digits)" if full else f"MNIST subset ({len(y_train):,} training digits, not full MNIST)"
    X_train, X_test = lenet.prepare_mnist(X_train).to(device), lenet.prepare_mnist(X_test).to(device)  # (N, 1, 32, 32)
    y_train, y_test = y_train.to(device), y_test.to(device)

    cuda = device.type == "cuda"
    batch, lr = (lenet.GPU_BATCH, lenet.GPU_LR) if cuda else (lenet.CPU_BATCH, lenet.CPU_LR)
    epochs = 12  # the recipe's schedule length; the run stops as soon as the target is reached
    generator = seed_everything(seed)
    net = models.LeNet5(activation="relu", pooling="max").to(device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    model = torch.compile(net) if compile_model else net
    # Untimed warm-up on a copy: first CUDA kernels, cuDNN's search, compilation.
    warm = models.LeNet5(activation="relu", pooling="max").to(device)
    warm_opt = torch.optim.AdamW(warm.parameters(), lr=lr)
    training.training_throughput(torch.compile(warm) if compile_model else warm, warm_opt, X_train[:batch], y_train[:batch],
                                 steps=1, warmup=2, bf16=cuda, channels_last=cuda)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = training.one_cycle(optimizer, lr, epochs, training.steps_per_epoch(len(y_train), batch))
    setup_seconds = time.perf_counter() - setup_start

    start = time.perf_counter()
    history = training.fit(
        model, optimizer, (X_train, y_train), (X_test, y_test), min(epochs, max_epochs), batch, generator, scheduler,
        augment=lenet.shift_digits(2), bf16=cuda, channels_last=cuda, eval_batch_size=5000 if cuda else 1000,
        target_acc=target, progress=False,
    )
    seconds = time.perf_counter() - start
    reached = max(history["test_acc"]) >= target
    elapsed = [sum(history["epoch_seconds"][: i + 1]) for i in range(len(history["epoch_seconds"]))]
    return {
        "benchmark": "lenet-time-to-accuracy",
        "dataset": dataset,
        "train_images": len(y_train),
        "test_images": len(y_test),
        "target_accuracy": target,
        "reached": reached,
        "seconds": round(seconds, 3) if reached else None,
        "seconds_run": round(seconds, 3),
        "epochs": len(history["test_acc"]),
        "accuracy": history["test_acc"][-1],
        "test_acc_per_epoch": history["test_acc"],
        "train_seconds_cumulative": [round(t, 3) for t in elapsed],
        "setup_seconds": round(setup_seconds, 3),
        "recipe": {"model": "LeNet5(relu, max)", "optimizer": "AdamW(wd=1e-4)", "schedule": f"one-cycle over {epochs} epochs",
                   "batch_size": batch, "max_lr": lr, "shift_px": 2, "bf16": cuda, "channels_last": cuda, "compile": compile_model},
        "device": describe(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "created": utc_timestamp(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", action="append", help="cpu or cuda (repeatable; default: cpu, and cuda when present)")
    parser.add_argument("--target", type=float, default=None, help="test accuracy to reach (default: 0.99 on full MNIST, 0.97 on a subset)")
    parser.add_argument("--max-epochs", type=int, default=12, help="give up after this many epochs (default: 12)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compilation is not timed)")
    parser.add_argument("--repeats", type=int, default=1, help="run N times and keep the fastest (steadier on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 epochs, results printed, not saved")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: LABS_DATA_DIR or data/)")
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ["LABS_DATA_DIR"] = args.data_dir
    if args.threads:
        torch.set_num_threads(args.threads)
    from labs.provided.data import DataError

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"skipping {name}: no CUDA GPU on this machine")
            continue
        try:
            runs = [run(device, args.target, 2 if args.quick else args.max_epochs, args.seed, args.compile) for _ in range(args.repeats)]
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        # The same seeded run repeated: the fastest is the least disturbed by other work on the machine.
        result = min(runs, key=lambda r: r["seconds_run"])
        result["repeats"] = args.repeats
        result["seconds_all_runs"] = [r["seconds_run"] for r in runs]
        status = f"{result['seconds']:.2f} s" if result["reached"] else f"not reached in {result['seconds_run']:.1f} s"
        print(
            f"{result['device']}: {result['target_accuracy']:.1%} on {result['dataset']}: {status}, "
            f"{result['epochs']} epoch(s), final test accuracy {result['accuracy']:.2%}"
        )
        if args.quick:
            print("(quick mode: nothing saved)")
            continue
        suffix = "" if result["train_images"] == 60_000 else f"-mnist-{result['train_images'] // 1000}k"
        save_json(RESULTS_DIR / f"lenet-time-to-accuracy-{device_slug(device)}{suffix}.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
