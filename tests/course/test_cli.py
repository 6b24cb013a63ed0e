"""`python -m labs ...` as a student or instructor types it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from labs import REPO_ROOT, cli


def _labs(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labs", *args], cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600
    )


def test_help_lists_every_command_of_the_table():
    process = _labs("--help")
    assert process.returncode == 0, process.stderr
    listed = re.search(r"\{([a-z,-]+)\}", process.stdout)
    assert listed, f"`python -m labs --help` lists no commands:\n{process.stdout}"
    assert listed.group(1).split(",") == [command.name for command in cli.COMMANDS]
    for command in cli.COMMANDS:  # each with its own line of help, not only inside another name ("grade" in "grade-class")
        assert re.search(rf"^\s+{re.escape(command.name)}\s+\S", process.stdout, re.MULTILINE), f"no help line for {command.name}"


def test_each_recipe_explains_its_options():
    for recipe in ("mlp", "lenet", "alexnet"):
        process = _labs("train", recipe, "--help")
        assert process.returncode == 0, f"`python -m labs train {recipe} --help` failed:\n{process.stderr}"
        for option in ("--epochs", "--device", "--data-dir"):
            assert option in process.stdout, f"`train {recipe} --help` does not mention {option}"


def test_download_either_fetches_mnist_or_says_how_to(tmp_path):
    process = _labs("download", "mnist", "--data-dir", str(tmp_path))
    if process.returncode == 0:  # a machine with internet access
        assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    else:
        assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr
        assert str(tmp_path) in process.stderr and "python -m labs download mnist" in process.stderr


def test_training_on_a_missing_dataset_says_where_and_how_to_fetch_it(tmp_path):
    process = _labs("train", "lenet", "--fast", "--data-dir", str(tmp_path / "empty"), LABS_IMPL="solutions")
    assert process.returncode != 0
    assert "Traceback" not in process.stderr, f"a missing dataset should give a clear error, not a traceback:\n{process.stderr[-2000:]}"
    assert "python -m labs download mnist" in process.stdout + process.stderr


def test_training_on_unfinished_stubs_names_the_exercise_instead_of_a_traceback(mnist_dir):
    process = _labs("train", "lenet", "--fast", LABS_IMPL="labs", LABS_DATA_DIR=str(mnist_dir))
    assert process.returncode == 1
    assert "Traceback" not in process.stderr, process.stderr[-2000:]
    assert "Exercise 3.1 (LeNet-5)" in process.stderr and "python -m labs grade" in process.stderr
