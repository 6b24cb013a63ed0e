"""Checks of the provided data, device and seeding helpers (labs/provided/{data,device,seeding}.py)."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from labs.provided import data
from labs.provided.data import DataError, load_mnist
from labs.provided.device import pick_device
from labs.provided.seeding import seed_everything


def test_load_mnist_gives_uint8_images_and_int64_labels(mnist_dir):
    X_train, y_train = load_mnist(train=True, root=mnist_dir, download=False)
    X_test, y_test = load_mnist(train=False, root=mnist_dir, download=False)
    assert X_train.shape == (5000, 1, 28, 28) and X_train.dtype == torch.uint8
    assert y_train.shape == (5000,) and y_train.dtype == torch.int64
    assert X_test.shape == (10000, 1, 28, 28) and y_test.shape == (10000,)
    assert set(y_test.tolist()) == set(range(10))
    assert int(X_train.max()) == 255 and int(X_train.min()) == 0


def test_truncated_mnist_file_is_reported_by_name(mnist_dir, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(mnist_dir / "MNIST" / "raw", raw)
    damaged = raw / "t10k-images-idx3-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-1000])  # a download cut short
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as error:
        load_mnist(train=False, root=tmp_path, download=False)
    assert "partial or corrupt" in str(error.value)
    X, _ = load_mnist(train=True, root=tmp_path, download=False)  # the intact split still loads
    assert X.shape[0] == 5000


def test_missing_mnist_says_where_what_and_how_to_fetch(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as error:
        load_mnist(train=True, root=missing, download=False)
    message = str(error.value)
    assert str(missing / "MNIST" / "raw") in message, "the message should name the folder it looked in"
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message, "the message should name the files"
    assert "python -m labs download mnist" in message, "the message should give the command that fetches MNIST"


def test_a_failed_download_becomes_a_data_error_with_the_command(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="python -m labs download mnist"):
        load_mnist(train=True, root=tmp_path, download=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_pick_device_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")


def test_seed_everything_repeats_every_generator():
    def draws():
        generator = seed_everything(7)
        return (random.random(), float(np.random.rand()), torch.rand(3).tolist(), torch.rand(3, generator=generator).tolist())

    assert draws() == draws()
    first = draws()
    seed_everything(8)
    assert torch.rand(3).tolist() != first[2], "another seed should give other draws"


def test_mnist_available_checks_all_four_files(mnist_dir, tmp_path):
    assert data.mnist_available(mnist_dir)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    assert not data.mnist_available(tmp_path)
