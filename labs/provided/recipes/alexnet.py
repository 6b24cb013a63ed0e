"""`python -m labs train alexnet`: AlexNet (Krizhevsky et al. 2012, exercise 4.1) on a GPU.

Data (--data):
    cifar10      CIFAR-10 through torchvision (downloaded when missing), held on the GPU as
                 uint8; each batch is normalised, randomly cropped (4-pixel shifts at 32x32)
                 and flipped, then resized to --image-size on the GPU. No DataLoader.
    mnist        the real MNIST digits (as `train lenet` reads them), held on the device as uint8
                 (N, 1, 28, 28); each batch is normalised, resized to --image-size and its grey
                 channel repeated three times (a view) on the device. Real images when CIFAR-10
                 is not there: on a CPU, --fast reaches 90% or more on the 10,000 test digits.
    imagefolder  any torchvision ImageFolder tree (--data-dir DIR, with DIR/train and
                 DIR/val, or class folders directly in DIR), e.g. an ImageNet subset: worker
                 processes decode and crop (RandomResizedCrop + flip), pinned memory, and
                 non-blocking copies keep the GPU busy.
    synthetic    random images and labels already on the device: for benchmarking and tests.

Speed switches, on by default on CUDA: bf16 autocast (--bf16), channels_last (--channels-last);
--compile wraps the model in torch.compile (a minute of compilation first, faster after).
Optimizer: SGD with momentum 0.9 and weight decay 5e-4 as in the paper, with a one-cycle
schedule instead of the paper's manual learning-rate drops; AdamW on MNIST (--optimizer).

Without a GPU (or with --fast) the recipe runs a small configuration (32x32 inputs,
AlexNet(small_inputs=True), a few steps) and says so: enough to see it work, not to train.
On MNIST the small configuration learns instead: one epoch over 5,000 digits with AdamW, from
He et al.'s initialisation (`he_initialise`; PyTorch's default everywhere else).

    python -m labs train alexnet --data cifar10                     # one GPU
    python -m labs train alexnet --data mnist --fast                # real digits on a laptop CPU (~2 minutes)
    python -m labs train alexnet --data imagefolder --data-dir /data/imagenet-100 --image-size 227 --compile
    python -m labs train alexnet --data synthetic --max-steps 50    # throughput only
    torchrun --standalone --nproc_per_node=gpu -m labs train alexnet --data cifar10     # every GPU of this machine

Several GPUs and several machines: see `labs.provided.distributed`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from labs.provided import augmentation, checkpoints, distributed, training
from labs.provided.data import MNIST_MEAN, MNIST_STD, DataError, load_cifar10, load_mnist
from labs.provided.device import describe, pick_device
from labs.provided.recipes.common import add_speed_options, apply_data_dir, recipe_parser
from labs.provided.recipes.lenet import shift_digits
from labs.provided.seeding import seed_everything

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CPU_IMAGE_SIZE, CPU_STEPS, CPU_BATCH = 32, 5, 16  # the small configuration for machines without a GPU
GPU_EPOCHS, GPU_BATCH, SGD_LR, ADAMW_LR = 30, 256, 0.02, 1e-3
# The small configuration on MNIST learns: one epoch over the first digits, with AdamW (the default
# for mnist), no dropout, and He initialisation. From PyTorch's default initialisation the signal
# shrinks about 60x between conv1 and fc8: SGD barely moves in a few hundred steps, and even Adam
# ends between 76% and 87% on the 10,000 test digits depending on the seed (seeds 0, 1, 2 with
# torch 2.15: 75.9%, 86.6%, 84.6%; lr 1e-4 and 1.5e-4 with seed 0: 79.5%, 79.8%). With He
# initialisation, which keeps the signal's scale from layer to layer, seed 0 reaches 95.5%.
MNIST_SMALL_TRAIN, MNIST_SMALL_BATCH, MNIST_SMALL_LR = 5000, 16, 2e-4


def he_initialise(net: torch.nn.Module) -> None:
    """He et al. (2015) initialisation for ReLU networks, in place: every convolution's and linear
    layer's weights from N(0, 2 / fan_in), biases 0, and the last layer (fc8) small, N(0, 0.01^2),
    so that the first logits are near 0 and the first loss near log(classes)."""
    layers = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for layer in layers:
        torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if layer.bias is not None:
            torch.nn.init.zeros_(layer.bias)
    if layers and isinstance(layers[-1], torch.nn.Linear):
        torch.nn.init.normal_(layers[-1].weight, std=0.01)


def normalizer(mean: tuple[float, ...], std: tuple[float, ...], size: int | None = None):
    """A `prepare` callback: uint8 (B, 3, h, w) -> normalised float (B, 3, size, size), resized on the device."""

    def prepare(images: Tensor) -> Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()  # (B, 3, h, w) in [0, 1]
        m = x.new_tensor(mean)[None, :, None, None]  # (1, 3, 1, 1) broadcasts over (B, 3, h, w)
        s = x.new_tensor(std)[None, :, None, None]  # (1, 3, 1, 1)
        x = (x - m) / s
        if size is not None and tuple(x.shape[2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)  # (B, 3, size, size)
        return x

    return prepare


def crop_and_flip(max_shift: int):
    """An `augment` callback: random shifts of up to `max_shift` pixels (zero = mean colour) and flips."""

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        return augmentation.random_flip(augmentation.random_shift(x, max_shift, generator), generator)  # (B, 3, S, S)

    return augment


def grey_to_rgb(mean: float, std: float, size: int):
    """A `prepare` callback for MNIST: uint8 digits (B, 1, h, w) -> normalised float (B, 3, size, size).

    Normalised and resized at one channel on the batch's device, then the grey channel is
    repeated as a view (stride 0, no copy): the dataset stays 28x28 uint8 in memory, 47 MB for
    60,000 digits instead of 37 GB as 3x227x227 floats, and only one batch at a time is resized.
    """

    def prepare(images: Tensor) -> Tensor:
        x = (images.float() / 255 - mean) / std  # (B, 1, h, w)
        if tuple(x.shape[2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # (B, 1, size, size)
        return x.expand(-1, 3, -1, -1)  # (B, 1, size, size) -> (B, 3, size, size), a view

    return prepare


def mnist_data(device: torch.device, image_size: int, train_size: int | None = None, test_size: int | None = None, download: bool = True):
    """MNIST for AlexNet: the real digits as 3-channel images at the model's input size.

    Args:
        device: where the uint8 digits are held (on a GPU: no copies from the host per batch).
        image_size: the model's input side; each batch is resized to it on `device`.
        train_size, test_size: keep only the first N digits of each split (default: all).
        download: fetch MNIST when it is missing.

    Returns:
        train_data: (images (N, 1, 28, 28) uint8, labels (N,) int64) on `device`.
        test_data: the same for the test split.
        prepare: uint8 batch (B, 1, 28, 28) -> normalised float (B, 3, image_size, image_size).

    Raises:
        DataError: MNIST missing (and not downloadable) or damaged; the message names the
            folder and `python -m labs download mnist`.
    """
    X_train, y_train = load_mnist(train=True, download=download)
    X_test, y_test = load_mnist(train=False, download=False)
    X_train, y_train, X_test, y_test = X_train[:train_size], y_train[:train_size], X_test[:test_size], y_test[:test_size]
    train_data = (X_train.to(device), y_train.to(device))  # (N, 1, 28, 28) uint8, (N,)
    test_data = (X_test.to(device), y_test.to(device))
    return train_data, test_data, grey_to_rgb(MNIST_MEAN, MNIST_STD, image_size)


def synthetic_data(n: int, size: int, num_classes: int, device: torch.device, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random uint8 images (n, 3, size, size) and labels (n,) made on `device` (for benchmarks and tests)."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator).to(device)  # (n, 3, size, size)
    labels = torch.randint(0, num_classes, (n,), generator=generator).to(device)  # (n,)
    return images, labels


def imagefolder_loaders(root: Path, size: int, batch_size: int, workers: int, context: distributed.Context):
    """(train loader, test loader or None) for an ImageFolder tree; uint8 batches, normalised on the GPU."""
    from torch.utils.data import DataLoader, DistributedSampler
    from torchvision import datasets, transforms

    train_dir = root / "train" if (root / "train").is_dir() else root
    val_dir = root / "val" if (root / "val").is_dir() else None
    if not train_dir.is_dir():
        raise DataError(f"no image folder at {root}: expected class sub-folders (DIR/<class>/*.jpg) or DIR/train and DIR/val")
    to_uint8 = transforms.PILToTensor()  # (3, h, w) uint8: 4x less to copy than float; normalised on the GPU
    train_set = datasets.ImageFolder(
        str(train_dir),
        transforms.Compose([transforms.RandomResizedCrop(size, antialias=True), transforms.RandomHorizontalFlip(), to_uint8]),
    )
    pin = context.device.type == "cuda"

    def loader(dataset, shuffle: bool) -> DataLoader:
        sampler = DistributedSampler(dataset, shuffle=shuffle) if context.distributed else None
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler, num_workers=workers,
            pin_memory=pin, drop_last=shuffle, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        )

    test = None
    if val_dir is not None:
        resize = transforms.Compose([transforms.Resize(int(size * 256 / 224), antialias=True), transforms.CenterCrop(size), to_uint8])
        test = loader(datasets.ImageFolder(str(val_dir), resize), shuffle=False)
    return loader(train_set, shuffle=True), test, len(train_set.classes)


def make_optimizer(name: str, parameters, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """"sgd" as in the paper (Nesterov momentum 0.9, weight decay 5e-4) or "adamw", fused where torch can.

    A fused optimizer updates every weight in one kernel: for AlexNet's 61 million on two CPU
    cores, 30-40 ms a step instead of 250 (torch fuses on CPU from 2.4, on CUDA since 2.0).
    """
    fused = device.type == "cuda" or (device.type == "cpu" and torch.torch_version.TorchVersion(torch.__version__) >= "2.4")
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True, fused=fused)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4, fused=fused)


def build_parser() -> argparse.ArgumentParser:
    parser = recipe_parser("alexnet", "Train AlexNet (CIFAR-10, MNIST, an ImageFolder tree, or synthetic data).", epochs=GPU_EPOCHS, batch_size=GPU_BATCH, lr=SGD_LR, checkpoint="runs/alexnet.pt")
    parser.set_defaults(epochs=None, batch_size=None, lr=None)  # chosen below: the small configuration on CPU
    parser._option_string_actions["--epochs"].help = f"passes over the training set (default: {GPU_EPOCHS} on CUDA, 1 on CPU or --fast)"
    parser._option_string_actions["--batch-size"].help = (
        f"images per step per process (default: {GPU_BATCH} on CUDA, {CPU_BATCH} on CPU or --fast, {MNIST_SMALL_BATCH} for mnist there)"
    )
    parser._option_string_actions["--lr"].help = (
        f"peak learning rate of the one-cycle schedule (default: {SGD_LR} for sgd, {ADAMW_LR} for adamw, {MNIST_SMALL_LR} for mnist on CPU or --fast)"
    )
    parser.add_argument("--data", choices=("cifar10", "mnist", "imagefolder", "synthetic"), default="cifar10", help="dataset (default: cifar10)")
    parser.add_argument(
        "--optimizer", choices=("sgd", "adamw"), default=None,
        help="SGD with Nesterov momentum 0.9 and weight decay 5e-4, as the paper, or AdamW (default: sgd; adamw for mnist)",
    )
    parser.add_argument("--image-size", type=int, default=None, help="side of the model's input (default: 64 for cifar10 and mnist, 227 otherwise; 32 on CPU)")
    parser.add_argument("--small-inputs", action=argparse.BooleanOptionalAction, default=None, help="AlexNet(small_inputs=True): conv1 stride 2 (default: on below 100 pixels)")
    parser.add_argument("--groups", type=int, default=2, help="towers, as the paper's two GPUs (default: 2)")
    parser.add_argument(
        "--two-towers", action="store_true",
        help="model parallel as in the paper: one tower on cuda:0, one on cuda:1, exchanging activations only at "
        "conv3 and the fully-connected layers (needs groups=2, two GPUs, one process; on CPU both towers share it)",
    )
    add_speed_options(parser)
    parser.add_argument("--max-steps", type=int, default=None, help="at most this many steps per epoch (default: all; CPU: 5)")
    parser.add_argument("--synthetic-size", type=int, default=4096, help="images in the synthetic set (default: 4096)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers for imagefolder (default: 8)")
    parser.add_argument("--save-rank-state", metavar="PATTERN", default=None, help="every process saves its final weights to PATTERN.format(rank=R) (DDP checks)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    apply_data_dir(args)
    try:
        device = pick_device(args.device)
        context = distributed.setup(device)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return _train(args, context)
    finally:
        distributed.cleanup()


@dataclass
class _Plan:
    """What one run trains: sizes and switches, from the options and the device."""

    small: bool  # the small configuration: CPU, or --fast / LABS_FAST=1
    learns: bool  # the small configuration that still learns something (real digits)
    image_size: int
    max_steps: int | None
    batch_size: int
    epochs: int
    optimizer: str
    lr: float
    small_inputs: bool
    bf16: bool
    channels_last: bool


def _plan(args: argparse.Namespace, cuda: bool) -> _Plan:
    small = args.fast or not cuda
    learns = small and args.data == "mnist"
    image_size = args.image_size or (CPU_IMAGE_SIZE if not cuda or learns else 64 if args.data in ("cifar10", "mnist") else 227)
    optimizer = args.optimizer or ("adamw" if args.data == "mnist" else "sgd")
    return _Plan(
        small=small, learns=learns, image_size=image_size,
        max_steps=args.max_steps if args.max_steps is not None else (CPU_STEPS if small and not learns else None),
        batch_size=args.batch_size or (MNIST_SMALL_BATCH if learns else CPU_BATCH if small else GPU_BATCH),
        epochs=args.epochs or (1 if small else GPU_EPOCHS),
        optimizer=optimizer,
        lr=args.lr or (MNIST_SMALL_LR if learns else SGD_LR if optimizer == "sgd" else ADAMW_LR),
        small_inputs=image_size < 100 if args.small_inputs is None else args.small_inputs,
        bf16=cuda if args.bf16 is None else args.bf16,
        channels_last=cuda if args.channels_last is None else args.channels_last,
    )


def _load_data(args: argparse.Namespace, plan: _Plan, context: distributed.Context, generator: torch.Generator):
    """(train data, test data or None, prepare, augment, number of classes) for --data; raises DataError."""
    device, augment, test_data = context.device, None, None
    if args.data in ("cifar10", "mnist"):
        if context.distributed and not context.is_main:
            torch.distributed.barrier()  # wait while rank 0 downloads (once, not once per process)
        if args.data == "cifar10":
            X_train, y_train = load_cifar10(train=True, download=context.is_main)
            X_test, y_test = load_cifar10(train=False, download=False)
            if plan.small:
                X_train, y_train, X_test, y_test = X_train[:2048], y_train[:2048], X_test[:512], y_test[:512]
            train_data = (X_train.to(device), y_train.to(device))  # (50000, 3, 32, 32) uint8 on the GPU: 150 MB
            test_data = (X_test.to(device), y_test.to(device))
            prepare = normalizer(CIFAR_MEAN, CIFAR_STD, plan.image_size)
            augment = crop_and_flip(max(1, 4 * plan.image_size // 32))  # RandomCrop(32, padding=4), at the model's scale
        else:  # all 10,000 test digits, in the small configuration too
            train_data, test_data, prepare = mnist_data(device, plan.image_size, MNIST_SMALL_TRAIN if plan.learns else None,
                                                        download=context.is_main)
            augment = None if plan.learns else shift_digits(max(1, 2 * plan.image_size // 28))  # no flips: a mirrored 2 is no 2
        if context.distributed and context.is_main:
            torch.distributed.barrier()
        return train_data, test_data, prepare, augment, 10
    if args.data == "synthetic":
        size = min(args.synthetic_size, 256) if plan.small else args.synthetic_size
        return synthetic_data(size, plan.image_size, 10, device, generator), None, normalizer(IMAGENET_MEAN, IMAGENET_STD), None, 10
    train_data, test_data, num_classes = imagefolder_loaders(Path(args.data_dir), plan.image_size, plan.batch_size, args.workers, context)
    return train_data, test_data, normalizer(IMAGENET_MEAN, IMAGENET_STD), None, num_classes


def _train(args: argparse.Namespace, context: distributed.Context) -> int:
    device = context.device
    say = print if context.is_main else (lambda *a, **k: None)
    cuda = device.type == "cuda"
    plan = _plan(args, cuda)
    if not cuda:
        if plan.learns and plan.max_steps is None:
            what = f"{plan.epochs} epoch(s) over {MNIST_SMALL_TRAIN:,} digits, batch {plan.batch_size}): enough to learn the digits"
        else:
            what = f"at most {plan.max_steps} steps, batch {plan.batch_size}) to show that everything runs"
        say(f"No CUDA GPU in use ({describe(device)}): running a small CPU configuration "
            f"({plan.image_size}x{plan.image_size} inputs, {what}. Train for real on a GPU.")
    if args.data == "imagefolder" and not args.data_dir:
        say("error: --data imagefolder needs --data-dir DIR (class folders, or DIR/train and DIR/val)", file=sys.stderr)
        return 2

    generator = seed_everything(args.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True
    try:
        train_data, test_data, prepare, augment, num_classes = _load_data(args, plan, context, generator)
    except DataError as error:
        instead = "or measure speed without data: --data synthetic" if args.data == "mnist" else "or train on real digits: --data mnist"
        say(f"error: {error} ({instead})", file=sys.stderr)
        return 1

    from labs import models  # the exercise module: yours, or the reference with LABS_IMPL=solutions

    dropout = 0.0 if plan.learns else 0.5  # one short epoch has no overfitting to fight, and dropout slows it down (80.5% -> 86%, from the default initialisation)
    net = models.AlexNet(num_classes=num_classes, groups=args.groups, dropout=dropout, small_inputs=plan.small_inputs).to(device)
    if plan.learns:
        he_initialise(net)  # one short epoch: from PyTorch's default initialisation it learns slowly, and by chance
    if args.two_towers:
        if context.distributed or args.groups != 2 or (cuda and torch.cuda.device_count() < 2):
            say("error: --two-towers needs --groups 2, one process (not torchrun) and two GPUs; "
                f"got groups={args.groups}, {context.world_size} process(es), {torch.cuda.device_count()} GPU(s)", file=sys.stderr)
            return 2
        towers = ("cuda:0", "cuda:1") if cuda else (device, device)
        net = models.TwoTowerAlexNet(net, towers)  # input on the first tower's device, logits back there
        say(f"two towers: {towers[0]} and {towers[1]}")
    if plan.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net = distributed.wrap(net, context)
    optimizer = make_optimizer(plan.optimizer, net.parameters(), plan.lr, device)
    if isinstance(train_data, tuple):
        steps = training.steps_per_epoch(len(train_data[1]), plan.batch_size, drop_last=True, world_size=context.world_size)
    else:
        steps = len(train_data)
    steps = min(steps, plan.max_steps) if plan.max_steps is not None else steps
    scheduler = training.one_cycle(optimizer, plan.lr, plan.epochs, steps)

    say(
        f"AlexNet ({models.count_parameters(training.unwrap(net)):,} parameters, groups={args.groups}, small_inputs={plan.small_inputs}) "
        f"on {describe(device)} x {context.world_size} process(es); data {args.data} at {plan.image_size}x{plan.image_size}; "
        f"{plan.epochs} epoch(s) of {steps} steps, batch {plan.batch_size} per process, {plan.optimizer} lr {plan.lr:g}; "
        f"bf16={plan.bf16}, channels_last={plan.channels_last}, compile={args.compile}" + ("  [fast mode]" if args.fast else "")
    )
    model = training.compile_model(net, log=say) if args.compile else net
    checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
    history = training.fit(
        model, optimizer, train_data, test_data, plan.epochs, plan.batch_size, generator, scheduler, prepare, augment,
        plan.bf16, plan.channels_last, drop_last=True, max_steps=plan.max_steps, eval_batch_size=512, checkpoint=checkpoint,
        resume=args.resume, extra={"recipe": "alexnet", "args": vars(args)}, progress=args.progress,
    )
    _report(args, context, net, history, test_data is not None, say)
    return 0


def _report(args: argparse.Namespace, context: distributed.Context, net, history: dict, tested: bool, say) -> None:
    say(f"training throughput: {history['images_per_s'][-1]:,.0f} images/s (last epoch, all processes)")
    if tested:
        say(f"test accuracy: {history['test_acc'][-1]:.2%}")
    if args.save_rank_state:
        path = Path(args.save_rank_state.format(rank=context.rank))
        checkpoints.atomic_save({name: value.cpu() for name, value in training.unwrap(net).state_dict().items()}, path)
    if context.is_main and tested:
        from labs.provided.recipes.lenet import save_curves

        save_curves(history, Path(args.out) / "alexnet-curves.png", f"AlexNet on {args.data}")


if __name__ == "__main__":
    raise SystemExit(main())
