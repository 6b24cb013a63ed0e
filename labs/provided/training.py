"""The provided training loop: plain functions over datasets held in memory as tensors.

MNIST and CIFAR-10 fit in memory, and on a GPU, so the loop needs no DataLoader: each epoch
draws one shuffled permutation of the indices from a seeded generator and slices batches out
of the resident tensors. Data preparation (uint8 -> normalised float, padding, resizing) and
augmentation (`labs.provided.augmentation`) are callbacks applied to whole batches on the data's device. Datasets read
from disk (an ImageFolder tree) come in through a DataLoader instead; `fit` accepts one too.

    history = fit(net, optimizer, (X_train, y_train), (X_test, y_test), epochs=10, batch_size=128,
                  generator=seed_everything(0), checkpoint="runs/lenet.pt")

What `fit` adds on top of the textbook loop:
    tqdm progress bars with loss, accuracy and images per second;
    a history dict: train_loss, train_acc, test_loss, test_acc, epoch_seconds, images_per_s;
    an optional one-cycle learning-rate schedule (`one_cycle`, Smith & Topin 2017);
    optional bf16 autocast and channels_last memory layout (they pay off on CUDA);
    checkpoints written atomically after every epoch (model, optimizer, scheduler, RNG states,
    epoch, history; `labs.provided.checkpoints`) and `resume=True`, which continues an
    interrupted run and ends with the same weights as an uninterrupted one (same seed, same device);
    DistributedDataParallel: each process trains on its own shard of every epoch's permutation
    (see `labs.provided.distributed`); only rank 0 prints and saves;
    `compile_model`: torch.compile, saying that the first steps are slow and then how slow.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from labs.provided.checkpoints import load_checkpoint, save_checkpoint, unwrap
from labs.provided.distributed import rank_and_world_size

# (N, C, H, W) -> (N, C, H', W') float: applied to every batch (train and test) before the model.
Prepare = Callable[[Tensor], Tensor]
# (N, C, H, W) float, generator -> (N, C, H, W): applied to training batches only, after `prepare`.
Augment = Callable[[Tensor, torch.Generator], Tensor]

HISTORY_KEYS = ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "images_per_s")
COMPILE_NOTICE = "compiling the model with torch.compile (the first steps take a while: ~30-60 s)..."
# Models from `compile_model` whose first training step has not run yet -> where to report it.
_first_compiled_step: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------- checks


def check_dataset(images: Tensor, labels: Tensor, what: str = "dataset") -> None:
    """Raise a ValueError that speaks to a student when images and labels do not fit together.

    Args:
        images: (N, C, H, W) tensor, any dtype.
        labels: (N,) int64 class indices on the same device.
    """
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(f"{what}: images and labels must be torch.Tensors, got {type(images).__name__} and {type(labels).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{what}: expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{what}: expected labels of shape ({images.shape[0]},) to match the images, got {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"{what}: labels must be int64 class indices, got {labels.dtype}")
    if images.device != labels.device:
        raise ValueError(f"{what}: images are on {images.device} but labels on {labels.device}; move both with .to(device)")
    if images.shape[0] == 0:
        raise ValueError(f"{what} is empty")


def compile_model(model: nn.Module, log: Callable[[str], None] | None = print, **options) -> nn.Module:
    """torch.compile(model, **options), saying first that the first steps will be slow.

    torch.compile returns at once: the work happens in the first calls (the forward graph at
    the first forward, the backward graph at the first backward, and one more graph the first
    time the model runs in eval mode). `run_epoch` and `training_throughput` then report how
    long the first step took, compilation included, through the same `log` (None: silent).
    """
    if log is not None:
        log(COMPILE_NOTICE)
    compiled = torch.compile(model, **options)
    if log is not None:
        _first_compiled_step[compiled] = log
    return compiled


def _report_first_compiled_step(log: Callable[[str], None], seconds: float) -> None:
    with tqdm.external_write_mode():  # above the progress bar, not through it
        log(f"torch.compile: the first step took {seconds:.1f} s, compilation included; the next steps run compiled "
            "(a new batch shape, or evaluation, compiles once more)")


# ----------------------------------------------------------------------------- batches


def batch_indices(
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[Tensor]:
    """Yield the index tensors of one epoch's batches, shuffled with `generator`.

    With several processes, every rank draws the same permutation (same generator state) and
    keeps every world_size-th index from position `rank` (DistributedSampler's sharding), the
    permutation cut to a multiple of world_size first so that every rank takes the same
    number of steps: collective operations in DDP need that.

    Args:
        n: dataset size.
        batch_size: indices per batch (per process).
        generator: CPU generator; its state advances by one permutation per call.
        shuffle: False gives 0..n-1 in order (evaluation).
        drop_last: skip a last batch smaller than batch_size.
        rank, world_size: this process's place among the DDP processes.

    Yields:
        int64 CPU tensors of shape (B,), B <= batch_size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)  # (n,)
    if world_size > 1:
        order = order[: n - n % world_size][rank::world_size]  # (n // world_size,)
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]  # (B,)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False, world_size: int = 1) -> int:
    """How many batches `batch_indices` yields per epoch on each process."""
    per_rank = n // world_size if world_size > 1 else n
    return per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)


# ----------------------------------------------------------------------------- schedule


def one_cycle(optimizer: torch.optim.Optimizer, max_lr: float, epochs: int, steps: int, pct_start: float = 0.25) -> torch.optim.lr_scheduler.OneCycleLR:
    """A one-cycle schedule (Smith & Topin 2017): warm up to max_lr, then anneal to ~0.

    Step it once per batch (`fit` does). `steps` is the number of batches per epoch.
    """
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps, pct_start=pct_start)


# ----------------------------------------------------------------------------- one step, one epoch


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _to_model_input(x: Tensor, prepare: Prepare | None, channels_last: bool) -> Tensor:
    x = prepare(x) if prepare is not None else x.float()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int = 1000,
    prepare: Prepare | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on a dataset, in eval mode.

    In a distributed run each process evaluates its share and the sums are all-reduced, so
    every rank returns the numbers for the whole dataset.

    Args:
        model: maps (B, C, H, W) float inputs to (B, num_classes) logits.
        images: (N, C, H, W), on the model's device (any dtype `prepare` accepts).
        labels: (N,) int64.
        batch_size: images per forward pass.
        prepare: batch -> model input, e.g. uint8 -> normalised float (default: `.float()`).
        bf16: run the forward pass under bf16 autocast.
        channels_last: feed inputs in channels_last memory layout.

    Returns:
        (loss, accuracy), accuracy in [0, 1].
    """
    check_dataset(images, labels, "evaluate")
    rank, world_size = rank_and_world_size()
    share = torch.arange(rank, len(labels), world_size, device=images.device)  # this process's indices, none left out
    batches = ((images[i], labels[i]) for i in share.split(batch_size))  # (B, C, H, W), (B,)
    return evaluate_batches(model, batches, prepare, bf16, channels_last)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    prepare: Prepare | None = None,
    augment: Augment | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    drop_last: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over the (shard of the) training set; returns loss, accuracy, images/s.

    Args:
        model: maps (B, C, H, W) floats to (B, num_classes) logits.
        images: (N, C, H, W) training images on the model's device.
        labels: (N,) int64 on the same device.
        batch_size: images per step, per process.
        generator: CPU generator for the permutation and the augmentation.
        scheduler: stepped after every optimizer step (e.g. `one_cycle`).
        prepare: batch -> model input (both training and evaluation).
        augment: batch, generator -> augmented batch (training only, after `prepare`).
        max_steps: stop after this many steps (smoke tests and benchmarks).

    Returns:
        {"loss", "acc", "images", "seconds", "images_per_s"} over this epoch (all processes).
    """
    check_dataset(images, labels, "training set")
    rank, world_size = rank_and_world_size()
    total = steps_per_epoch(len(labels), batch_size, drop_last, world_size)
    total = min(total, max_steps) if max_steps is not None else total
    indices = batch_indices(len(labels), batch_size, generator, True, drop_last, rank, world_size)
    device = images.device
    batches = ((images[i], labels[i]) for i in (index.to(device, non_blocking=True) for index in indices))  # (B, C, H, W), (B,)
    return run_epoch(model, optimizer, batches, total, generator, scheduler, prepare, augment, bf16, channels_last, progress, desc)


def run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]],
    total: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    prepare: Prepare | None = None,
    augment: Augment | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """Train on `total` batches from any iterable of (images (B, C, H, W), labels (B,)) pairs.

    `train_epoch` feeds it slices of tensors in memory; a recipe with a DataLoader (images
    read from disk) feeds it the loader. Batches are moved to the model's device.
    """
    rank, world_size = rank_and_world_size()
    device = next(unwrap(model).parameters()).device
    compiling = _first_compiled_step.pop(model, None)
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not progress or rank != 0, dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        if step == total:
            break
        x = _to_model_input(x.to(device, non_blocking=True), prepare, channels_last)  # (B, C, H, W)
        if augment is not None:
            x = augment(x, generator)  # (B, C, H, W)
        y = y.to(device, non_blocking=True)  # (B,)
        with _autocast(device, bf16):
            logits = model(x)  # (B, num_classes)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if step == 0 and compiling is not None:
            _synchronize(device)
            _report_first_compiled_step(compiling, time.perf_counter() - start)
        with torch.no_grad():
            totals[0] += loss.detach() * len(y)
            totals[1] += (logits.argmax(1) == y).sum()
            totals[2] += len(y)
        bar.update(1)
        if progress and rank == 0 and (step % 20 == 0 or step == total - 1):  # .tolist() waits for the GPU: not every step
            loss_sum, correct, count = totals.tolist()
            seconds = time.perf_counter() - start
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.2%}", img_s=f"{count * world_size / seconds:,.0f}")
    bar.close()
    if world_size > 1:
        torch.distributed.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()  # waits for the device: the time below is honest
    seconds = time.perf_counter() - start
    count = max(count, 1)
    return {"loss": loss_sum / count, "acc": correct / count, "images": count, "seconds": seconds, "images_per_s": count / seconds}


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    prepare: Prepare | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean loss and accuracy over any iterable of (images, labels) batches (e.g. a DataLoader).

    In a distributed run the sums are all-reduced: give each process its own shard.
    """
    _, world_size = rank_and_world_size()
    device = next(unwrap(model).parameters()).device
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # no gradients, nothing to synchronise; ranks may run different batch counts
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    for x, y in batches:
        x = _to_model_input(x.to(device, non_blocking=True), prepare, channels_last)  # (B, C, H, W)
        y = y.to(device, non_blocking=True)  # (B,)
        with _autocast(device, bf16):
            logits = model(x)  # (B, num_classes)
        totals[0] += F.cross_entropy(logits.float(), y, reduction="sum")
        totals[1] += (logits.argmax(1) == y).sum()
        totals[2] += len(y)
    if world_size > 1:
        torch.distributed.all_reduce(totals)
    model.train(was_training)
    loss, correct, count = totals.tolist()
    return loss / max(count, 1), correct / max(count, 1)


# ----------------------------------------------------------------------------- the loop


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_data: tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]],
    test_data: tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]] | None,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    prepare: Prepare | None = None,
    augment: Augment | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    drop_last: bool = False,
    max_steps: int | None = None,
    eval_batch_size: int = 1000,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    extra: dict | None = None,
    target_acc: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[float]]:
    """Train for `epochs` epochs, evaluating after each; return the history.

    Args:
        model: maps (B, C, H, W) floats to (B, num_classes) logits; already on the data's
            device (and wrapped in DDP for distributed runs).
        optimizer, scheduler: the scheduler is stepped after every batch.
        train_data: (images (N, C, H, W), labels (N,)) on the model's device; or a DataLoader
            of (images, labels) batches for datasets read from disk (it shuffles and shards
            itself; resuming is then exact only if its workers' randomness is).
        test_data: the same for evaluation after every epoch, or None.
        epochs: total epochs of the run (a resumed run counts the epochs already done).
        batch_size: images per step per process (in-memory data).
        generator: seeded CPU generator; drives shuffling and augmentation.
        prepare, augment: batch callbacks, see `train_epoch`.
        bf16, channels_last: bf16 autocast and channels_last inputs (use on CUDA).
        max_steps: cap on steps per epoch (smoke tests).
        checkpoint: file written atomically after every epoch (rank 0 only).
        resume: continue from `checkpoint` when it exists.
        extra: stored in the checkpoint beside the state (e.g. the recipe's arguments).
        target_acc: stop as soon as the test accuracy reaches it (time-to-accuracy runs).
        progress: show tqdm bars (rank 0 only).
        log: where the one-line epoch summaries go (None: nowhere).

    Returns:
        {"train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds", "images_per_s"}:
        one float per epoch each (test entries are nan without test_data).
    """
    in_memory = isinstance(train_data, (tuple, list))
    if in_memory:
        check_dataset(*train_data, "training set")
    if isinstance(test_data, (tuple, list)):
        check_dataset(*test_data, "test set")
    rank, _ = rank_and_world_size()
    log = log if rank == 0 else None
    history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
    first = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, model, optimizer, scheduler, generator)
        first, history = state["epoch"], state["history"]
        if log:
            log(f"resumed from {checkpoint} after epoch {first}/{epochs}")
    for epoch in range(first, epochs):
        desc = f"epoch {epoch + 1}/{epochs}"
        if in_memory:
            stats = train_epoch(
                model, optimizer, *train_data, batch_size, generator, scheduler, prepare, augment,
                bf16, channels_last, drop_last, max_steps, progress, desc,
            )
        else:  # a DataLoader: its own batch size, shuffling and (DistributedSampler) sharding
            if hasattr(getattr(train_data, "sampler", None), "set_epoch"):
                train_data.sampler.set_epoch(epoch)  # a new shuffle every epoch, the same on every rank
            total = min(len(train_data), max_steps) if max_steps is not None else len(train_data)
            stats = run_epoch(model, optimizer, train_data, total, generator, scheduler, prepare, augment, bf16, channels_last, progress, desc)
        test_loss, test_acc = math.nan, math.nan
        if isinstance(test_data, (tuple, list)):
            test_loss, test_acc = evaluate(model, *test_data, eval_batch_size, prepare, bf16, channels_last)
        elif test_data is not None:
            test_loss, test_acc = evaluate_batches(model, test_data, prepare, bf16, channels_last)
        for key, value in zip(HISTORY_KEYS, (stats["loss"], stats["acc"], test_loss, test_acc, stats["seconds"], stats["images_per_s"])):
            history[key].append(value)
        if log:
            tested = f"test loss {test_loss:.4f} acc {test_acc:.2%}  " if test_data is not None else ""
            log(
                f"epoch {epoch + 1:>3}/{epochs}  train loss {stats['loss']:.4f} acc {stats['acc']:.2%}  "
                f"{tested}{stats['seconds']:.1f}s  {stats['images_per_s']:,.0f} img/s"
            )
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, model, optimizer, scheduler, generator, epoch + 1, history, extra)
        if target_acc is not None and test_acc >= target_acc:
            break
    return history


# ----------------------------------------------------------------------------- predictions and timing


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 1000, prepare: Prepare | None = None) -> Tensor:
    """Predicted classes for every image, in eval mode.

    Args:
        images: (N, C, H, W) on the model's device.
    Returns:
        (N,) int64 class indices, on the images' device.
    """
    was_training = model.training
    model.eval()
    out = [model(_to_model_input(images[start : start + batch_size], prepare, False)).argmax(1) for start in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out)  # (N,)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_throughput(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    steps: int = 20,
    warmup: int = 5,
    prepare: Prepare | None = None,
    bf16: bool = False,
    channels_last: bool = False,
) -> dict[str, float]:
    """Training images per second on one resident batch: forward, backward and optimizer step.

    The `warmup` steps run first and are not timed: they absorb torch.compile's compilation,
    cuDNN's algorithm search and the allocator's first requests. On CUDA the timed steps are
    measured with CUDA events after a synchronisation, so queued work is counted; on CPU with
    a wall clock.

    Args:
        model: already on the device (compiled or not).
        images: (B, C, H, W) one batch, on the device (uint8 or float; see `prepare`).
        labels: (B,) int64.
        steps: timed steps.

    Returns:
        {"images_per_s", "step_ms", "batch_size", "steps"}.
    """
    check_dataset(images, labels, "benchmark batch")
    device = images.device
    model.train()

    def step() -> None:
        x = _to_model_input(images, prepare, channels_last)  # (B, C, H, W)
        with _autocast(device, bf16):
            loss = F.cross_entropy(model(x).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    compiling = _first_compiled_step.pop(model, None)
    for index in range(warmup):
        begin = time.perf_counter()
        step()
        if index == 0 and compiling is not None:
            _synchronize(device)
            _report_first_compiled_step(compiling, time.perf_counter() - begin)
    _synchronize(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        begin = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - begin
    return {"images_per_s": steps * len(labels) / seconds, "step_ms": 1000 * seconds / steps, "batch_size": len(labels), "steps": steps}
