"""Checks of the provided training loop (labs/provided/training.py) and the LeNet/AlexNet recipes.

CPU only and fast: tiny models for the checkpoint mechanics, a short real LeNet-5 run on
the MNIST in LABS_DATA_DIR (skipped without it), one AlexNet step on synthetic data, and
the torch.compile notices (with torch.compile stubbed out: compiling takes minutes on a CPU).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from labs.provided import augmentation, checkpoints, training
from labs.provided.seeding import seed_everything

from labs import REPO_ROOT


def tiny_problem(n: int = 96) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A learnable 3-class problem on (n, 1, 6, 6) images: the class is the brightest third of the image."""
    g = torch.Generator().manual_seed(123)
    y = torch.randint(0, 3, (n,), generator=g)  # (n,)
    X = torch.rand(n, 1, 6, 6, generator=g)  # (n, 1, 6, 6)
    for c in range(3):
        X[y == c, :, 2 * c : 2 * c + 2, :] += 1.0  # rows 2c, 2c+1 brighter for class c
    return (X[: n * 3 // 4], y[: n * 3 // 4]), (X[n * 3 // 4 :], y[n * 3 // 4 :])


def tiny_net() -> nn.Module:
    # Dropout draws from torch's global RNG: resuming must restore that state too.
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 4 * 4, 3))


def make_run(seed: int = 0, epochs: int = 4, steps: int = 3):
    generator = seed_everything(seed)
    net = tiny_net()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    scheduler = training.one_cycle(optimizer, 1e-2, epochs, steps)
    return net, optimizer, scheduler, generator


def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return augmentation.random_shift(x, 1, generator)  # augmentation draws from the data generator too


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    train, test = tiny_problem()
    epochs, batch = 4, 24  # 72 training images: 3 steps per epoch
    net, opt, sched, gen = make_run(epochs=epochs)
    reference = training.fit(net, opt, train, test, epochs, batch, gen, sched, augment=shift, progress=False, log=None)
    expected = {k: v.clone() for k, v in net.state_dict().items()}

    # The same run, killed in the middle of epoch 3 (after two checkpoints) ...
    checkpoint = tmp_path / "run.pt"
    calls = {"n": 0}

    def dying_shift(x, generator):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # second step of epoch 3
            raise Interrupt
        return shift(x, generator)

    net, opt, sched, gen = make_run(epochs=epochs)
    with pytest.raises(Interrupt):
        training.fit(net, opt, train, test, epochs, batch, gen, sched, augment=dying_shift, checkpoint=checkpoint, progress=False, log=None)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 2, "a checkpoint should hold the last finished epoch"

    # ... and resumed in a fresh process-like state: new objects, a different RNG state.
    torch.manual_seed(999)
    net, opt, sched, gen = make_run(seed=999, epochs=epochs)
    history = training.fit(net, opt, train, test, epochs, batch, gen, sched, augment=shift, checkpoint=checkpoint, resume=True, progress=False, log=None)
    for name, value in net.state_dict().items():
        assert torch.equal(value, expected[name]), f"after resuming, {name} differs from the uninterrupted run"
    assert history["test_acc"] == reference["test_acc"], "the resumed history should continue the interrupted one"
    assert len(history["train_loss"]) == epochs


def test_checkpoint_write_is_atomic_when_saving_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    checkpoints.atomic_save({"version": 1}, path)

    def broken_save(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.atomic_save({"version": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"version": 1}, "a failed save must leave the previous checkpoint intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"], "a failed save must not leave a temporary file behind"


def test_batch_indices_cover_every_example_once_and_shard_evenly():
    g = torch.Generator().manual_seed(0)
    seen = torch.cat(list(training.batch_indices(10, 3, g)))
    assert sorted(seen.tolist()) == list(range(10))
    shards = []
    for rank in range(3):
        g = torch.Generator().manual_seed(0)  # every rank starts from the same generator state
        shards.append(torch.cat(list(training.batch_indices(10, 2, g, rank=rank, world_size=3))))
    assert all(len(s) == 3 for s in shards), "every rank should get 10 // 3 = 3 indices"
    assert len(set(torch.cat(shards).tolist())) == 9, "the shards of one epoch must not overlap"


def test_fit_rejects_labels_that_do_not_match_the_images():
    net, opt, _, gen = make_run()
    with pytest.raises(ValueError, match=r"labels of shape \(8,\)"):
        training.fit(net, opt, (torch.zeros(8, 1, 6, 6), torch.zeros(7, dtype=torch.long)), None, 1, 4, gen, progress=False, log=None)
    with pytest.raises(ValueError, match="int64"):
        training.evaluate(net, torch.zeros(8, 1, 6, 6), torch.zeros(8))


def test_random_shift_moves_each_image_and_fills_with_zeros():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0  # one bright pixel in the middle
    g = torch.Generator().manual_seed(0)
    y = augmentation.random_shift(x.repeat(50, 1, 1, 1), 2, g)  # (50, 1, 5, 5)
    assert y.shape == (50, 1, 5, 5)
    assert torch.all(y.sum((1, 2, 3)) == 1), "a shift of at most 2 keeps the centre pixel inside a 5x5 image"
    assert len({int(i) for i in y.flatten(1).argmax(1)}) > 5, "different images should get different shifts"


@pytest.mark.timeout(180)
def test_short_lenet_run_on_real_mnist_reaches_97_percent(mnist_dir, models):
    """The recipe's fast configuration (4 epochs on the 5,000 digits) on the 10,000 test digits."""
    from labs.provided.data import load_mnist
    from labs.provided.recipes import lenet

    X_train, y_train = load_mnist(True, mnist_dir, download=False)
    X_test, y_test = load_mnist(False, mnist_dir, download=False)
    generator = seed_everything(0)
    net = models.LeNet5(activation="relu", pooling="max")
    epochs, batch = lenet.FAST_EPOCHS, lenet.FAST_BATCH
    optimizer = torch.optim.AdamW(net.parameters(), lr=lenet.FAST_LR, weight_decay=1e-4)
    scheduler = training.one_cycle(optimizer, lenet.FAST_LR, epochs, training.steps_per_epoch(len(y_train), batch))
    history = training.fit(
        net, optimizer, (lenet.prepare_mnist(X_train), y_train), (lenet.prepare_mnist(X_test), y_test), epochs, batch,
        generator, scheduler, augment=lenet.shift_digits(1), progress=False, log=None,
    )
    assert len(y_test) == 10_000
    assert history["test_acc"][-1] >= 0.97, f"LeNet-5 reached only {history['test_acc'][-1]:.2%} on the test digits"
    assert history["train_loss"][-1] < history["train_loss"][0]


@pytest.mark.timeout(240)
@pytest.mark.slow
def test_lenet_recipe_runs_from_the_command_line(mnist_dir, tmp_path):
    env = {**os.environ, "LABS_DATA_DIR": str(mnist_dir), "LABS_IMPL": "solutions"}
    result = subprocess.run(
        [sys.executable, "-m", "labs", "train", "lenet", "--fast", "--epochs", "1", "--train-size", "1000", "--no-progress",
         "--checkpoint", str(tmp_path / "lenet.pt"), "--out", str(tmp_path)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy:" in result.stdout, result.stdout
    assert (tmp_path / "lenet.pt").is_file(), "the recipe should save a checkpoint"
    state = torch.load(tmp_path / "lenet.pt", weights_only=False)
    assert state["epoch"] == 1 and "c1.weight" in state["model"]


def test_lenet_recipe_says_how_to_fetch_missing_mnist(tmp_path, capsys, monkeypatch):
    from labs.provided.recipes import lenet

    import labs.provided.data as data

    monkeypatch.setattr(data, "_download", lambda name, root: None)  # no network in the test: nothing arrives
    monkeypatch.setenv("LABS_DATA_DIR", str(tmp_path / "empty"))  # restored after the test (the recipe sets it from --data-dir)
    code = lenet.main(["--data-dir", str(tmp_path / "empty"), "--no-progress", "--device", "cpu"])
    assert code == 1
    assert "python -m labs download mnist" in capsys.readouterr().err


@pytest.mark.slow
def test_alexnet_small_configuration_lowers_the_loss_on_synthetic_data(models):
    from labs.provided.recipes import alexnet

    generator = seed_everything(0)
    images, labels = alexnet.synthetic_data(16, 32, 10, torch.device("cpu"), generator)
    x = alexnet.normalizer(alexnet.IMAGENET_MEAN, alexnet.IMAGENET_STD)(images)  # (16, 3, 32, 32)
    net = models.AlexNet(num_classes=10, small_inputs=True, dropout=0.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(nn.functional.cross_entropy(net(x), labels).item())
    assert losses[-1] < losses[0], f"three SGD steps on one batch should lower its loss, got {losses}"


@pytest.mark.slow
def test_alexnet_recipe_trains_the_two_tower_model_parallel_version(tmp_path):
    """--two-towers on CPU puts both towers on the one device: the same code path a 2-GPU run takes."""
    process = subprocess.run(
        [sys.executable, "-m", "labs", "train", "alexnet", "--data", "synthetic", "--fast", "--two-towers", "--device", "cpu",
         "--max-steps", "2", "--checkpoint", "none", "--no-progress", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "LABS_IMPL": "solutions"},
    )
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    assert "two towers: cpu and cpu" in process.stdout, process.stdout[-2000:]


def _fake_compile(model: nn.Module, **options) -> nn.Module:
    """Stands in for torch.compile (minutes on a CPU): a new module around the same model, as torch.compile returns."""
    return nn.Sequential(model)


def test_compile_model_says_it_compiles_and_then_how_long_the_first_step_took(monkeypatch):
    monkeypatch.setattr(torch, "compile", _fake_compile)
    train, test = tiny_problem()
    net, opt, sched, gen = make_run(epochs=2)
    lines = []
    model = training.compile_model(net, log=lines.append)
    assert lines == [training.COMPILE_NOTICE], f"compile_model should announce the wait before anything runs, said {lines}"
    assert "torch.compile" in training.COMPILE_NOTICE and "take a while" in training.COMPILE_NOTICE
    training.fit(model, opt, train, test, 2, 24, gen, sched, progress=False, log=None)
    assert len(lines) == 2 and re.search(r"the first step took \d+\.\d s", lines[1]), f"expected one report after the first step, got {lines}"


@pytest.mark.slow
def test_recipes_announce_torch_compile(monkeypatch, capsys, tmp_path):
    from labs.provided.recipes import alexnet

    monkeypatch.setattr(torch, "compile", _fake_compile)
    code = alexnet.main(["--data", "synthetic", "--fast", "--device", "cpu", "--compile", "--max-steps", "1", "--batch-size", "4",
                         "--checkpoint", "none", "--no-progress", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "compiling the model with torch.compile (the first steps take a while" in out, out[-2000:]
    assert "the first step took" in out, out[-2000:]
