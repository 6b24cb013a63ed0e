"""Command-line arguments shared by every `python -m labs train <recipe>`."""

from __future__ import annotations

import argparse
import os

from labs.provided.settings import fast_mode


def recipe_parser(
    name: str, description: str, epochs: int, batch_size: int, lr: float, checkpoint: str | None = None
) -> argparse.ArgumentParser:
    """A parser with the options every recipe takes; a recipe adds its own after.

    --epochs, --batch-size, --lr   the recipe's defaults, shown in --help
    --device                       cpu, cuda, cuda:N or mps (default: best available)
    --data-dir                     dataset folder (default: LABS_DATA_DIR or data/)
    --seed                         for reproducible runs
    --fast                         tiny data and one short epoch, as LABS_FAST=1 does
    --no-progress                  no progress bars (logs, batch jobs)
    With a default `checkpoint` path, also --checkpoint PATH, --resume and --out DIR (curves).
    """
    parser = argparse.ArgumentParser(prog=f"python -m labs train {name}", description=description)
    parser.add_argument("--epochs", type=int, default=epochs, help=f"passes over the training set (default: {epochs})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"images per step (default: {batch_size})")
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default: {lr})")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: CUDA, then MPS, then CPU)")
    parser.add_argument("--data-dir", default=None, help="dataset folder (default: LABS_DATA_DIR or data/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--fast", action="store_true", default=fast_mode(), help="tiny run for smoke tests (also LABS_FAST=1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    if checkpoint is not None:
        parser.add_argument("--checkpoint", default=checkpoint, help=f"checkpoint file, written after every epoch (default: {checkpoint}; 'none' to skip)")
        parser.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
        parser.add_argument("--out", default="runs", help="folder for the training-curves PNG (default: runs)")
    return parser


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """--bf16, --channels-last and --compile, for the recipes that train convolutional networks on a GPU."""
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on for CUDA)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="channels_last layout (default: on for CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (the first steps compile: a slow start, faster after)")


def apply_data_dir(args: argparse.Namespace) -> None:
    """Make --data-dir the folder that `labs.provided.data` reads (through LABS_DATA_DIR)."""
    if args.data_dir:
        os.environ["LABS_DATA_DIR"] = args.data_dir
