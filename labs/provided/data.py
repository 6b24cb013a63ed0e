"""MNIST and CIFAR-10 as whole tensors, read through torchvision.

Both datasets are small enough to hold in memory (and on a GPU), which is how the labs
train fast: no per-sample DataLoader work. Images come back as uint8 `(N, C, H, W)`;
convert with `images.float() / 255`.

Files live under `settings.data_dir()` (LABS_DATA_DIR, default `data/`) in torchvision's
layout. Missing files are downloaded when `download=True` and the network allows; when it
does not, the error names the folder, the files expected and the command that fetches them.
Files that are present are checked (magic numbers, sizes, label range) before use, so a
truncated download is reported, not trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from labs.provided.settings import data_dir

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the 60,000 training digits scaled to [0, 1]

MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


class DataError(RuntimeError):
    """A dataset that is missing or damaged; the message says how to fix it."""


def _fetch_hint(name: str, root: Path) -> str:
    return f"fetch it with `python -m labs download {name} --data-dir {root}` on a machine with internet access"


def mnist_available(root: str | Path | None = None) -> bool:
    """True when all four MNIST files are present under `root`/MNIST/raw."""
    raw = Path(root if root is not None else data_dir()) / "MNIST" / "raw"
    return all((raw / name).is_file() for split in MNIST_FILES.values() for name in split)


def _read_idx(path: Path, magic: int, tail_shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file, checking its header against its length."""
    blob = path.read_bytes()
    header_size = 4 * (1 + 1 + len(tail_shape))
    if len(blob) < header_size:
        raise DataError(f"{path} is truncated ({len(blob)} bytes): delete it and download again")
    header = np.frombuffer(blob[:header_size], dtype=">i4")
    if header[0] != magic:
        raise DataError(f"{path} is not an MNIST file (magic number {header[0]}, expected {magic}): delete it and download again")
    count, shape = int(header[1]), tuple(int(v) for v in header[2:])
    if shape != tail_shape:
        raise DataError(f"{path} holds items of shape {shape}, expected {tail_shape}")
    expected = header_size + count * int(np.prod(tail_shape, dtype=np.int64))
    if len(blob) != expected:
        raise DataError(f"{path} has {len(blob)} bytes, its header promises {expected}: the file is partial or corrupt; delete it and download again")
    return np.frombuffer(blob, dtype=np.uint8, offset=header_size).reshape(count, *tail_shape)  # (count, *tail_shape)


def load_mnist(train: bool = True, root: str | Path | None = None, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as tensors.

    Args:
        train: the training split (60,000 images in full MNIST) or the test split (10,000).
        root: the data folder (default: `settings.data_dir()`); files sit in root/MNIST/raw.
        download: fetch missing files through torchvision.

    Returns:
        images: uint8 tensor of shape (N, 1, 28, 28).
        labels: int64 tensor of shape (N,), values 0-9.

    Raises:
        DataError: files missing (and not downloadable) or damaged.
    """
    root = Path(root if root is not None else data_dir())
    raw = root / "MNIST" / "raw"
    image_file, label_file = (raw / name for name in MNIST_FILES[train])
    if not (image_file.is_file() and label_file.is_file()):
        if download:
            _download("mnist", root)
        if not (image_file.is_file() and label_file.is_file()):
            raise DataError(
                f"MNIST {'training' if train else 'test'} files not found in {raw}: expected "
                f"{image_file.name} and {label_file.name}; {_fetch_hint('mnist', root)}, "
                "or set LABS_DATA_DIR to a folder that holds MNIST/raw"
            )
    images = _read_idx(image_file, IMAGE_MAGIC, (28, 28))
    labels = _read_idx(label_file, LABEL_MAGIC, ())
    if len(images) != len(labels):
        raise DataError(f"{raw} holds {len(images)} images but {len(labels)} labels: one file is from another download")
    if labels.max(initial=0) > 9:
        raise DataError(f"{label_file} holds a label {labels.max()}: MNIST labels are 0-9; the file is corrupt")
    images = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    return images, torch.from_numpy(labels.astype(np.int64))


def load_cifar10(train: bool = True, root: str | Path | None = None, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a CIFAR-10 split as tensors (torchvision checks each file's MD5).

    Returns:
        images: uint8 tensor of shape (N, 3, 32, 32); N is 50,000 (train) or 10,000 (test).
        labels: int64 tensor of shape (N,), values 0-9.
    """
    import torchvision

    root = Path(root if root is not None else data_dir())
    folder = root / "cifar-10-batches-py"
    probe = torchvision.datasets.CIFAR10.__new__(torchvision.datasets.CIFAR10)
    probe.root = str(root)
    if not probe._check_integrity():
        if download:
            _download("cifar10", root)
        if not probe._check_integrity():
            state = "damaged or partial" if folder.exists() else "not found"
            raise DataError(
                f"CIFAR-10 is {state} in {folder}: expected data_batch_1..5, test_batch and batches.meta "
                f"with torchvision's checksums; {_fetch_hint('cifar10', root)}"
            )
    dataset = torchvision.datasets.CIFAR10(str(root), train=train, download=False)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def _download(name: str, root: Path) -> None:
    """Fetch a dataset through torchvision; network errors become a DataError that says what to do."""
    import torchvision

    datasets = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            datasets[name](str(root), train=train, download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision raises RuntimeError on bad checksums
        raise DataError(f"could not download {name} into {root} ({error}); {_fetch_hint(name, root)}") from error


def download(name: str, root: str | Path | None = None) -> Path:
    """`python -m labs download {mnist,cifar10}`: fetch a dataset and return its folder."""
    root = Path(root if root is not None else data_dir())
    loaders = {"mnist": load_mnist, "cifar10": load_cifar10}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}: expected one of {sorted(loaders)}")
    for train in (True, False):
        loaders[name](train=train, root=root, download=True)
    return root
