"""Shared pytest setup: which implementation is tested, exercise markers, module fixtures.

Graded tests (tests/test_*.py) are written once and run against either implementation:

    pytest --impl labs        # your code in labs/ (the default)
    pytest --impl solutions   # the reference; also runs the course checks in tests/course/

Each graded test carries its exercise's marker, so `pytest -m ex2_4` runs one exercise.
Tests of the provided code around an exercise (its input checks) also carry `provided`:
they run with the exercise but earn no points, since the stubs contain that code too.
Tests receive the exercise module through a fixture (`mlp`, `conv`, ...) rather than a
top-level import: a module that fails to import then fails its own tests with the error,
instead of stopping the whole run. When the grader runs the tests (`python -m labs grade`),
the fixtures hand out proxies instead: the student's code runs in a confined worker process
and only data comes back (labs/grader/trusted/proxies.py). Tests therefore treat what a module
returns as data, and reach autograd inside the student's code through `tests.helpers.in_worker`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from hypothesis import Phase, settings

TESTS_DIR = Path(__file__).resolve().parent
COURSE_DIR = TESTS_DIR / "course"


def pytest_configure(config: pytest.Config) -> None:
    impl = config.getoption("impl")
    os.environ["LABS_IMPL"] = impl  # subprocesses (notebooks, torchrun) see the same choice
    import labs
    from labs.grader.catalog import load_catalog

    labs.use_implementation(impl)
    for exercise in load_catalog():
        config.addinivalue_line("markers", f"{exercise.marker}: Exercise {exercise.id}: {exercise.title}")
    # Property tests report the smallest failing example of the first failure they find, and
    # nothing else: no search for further distinct failures, no "explain" phase, no example
    # database. A student reads one clear case, grading a stub stays quick, and each run (with
    # derandomize=True on every @settings) tries the same examples: grades repeat.
    settings.register_profile(
        "graded", phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], report_multiple_bugs=False, database=None
    )
    settings.load_profile("graded")
    config.addinivalue_line(
        "markers",
        "provided: checks provided code that surrounds an exercise (input validation); runs with the "
        "exercise's tests but earns no points, since the stubs already contain that code",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check that every graded test names one exercise; keep course checks to --impl solutions."""
    from labs.grader.catalog import load_catalog

    markers = {exercise.marker for exercise in load_catalog()}
    course, graded = [], []
    for item in items:
        if COURSE_DIR in Path(item.fspath).parents:
            course.append(item)
            continue
        found = sorted(m.name for m in item.iter_markers() if m.name in markers)
        if len(found) != 1:
            raise pytest.UsageError(f"{item.nodeid}: a graded test needs exactly one exercise marker, found {found}")
        graded.append(item)
    if config.getoption("impl") == "labs" and course:
        # The course checks test the reference and the infrastructure, not your code.
        config.hook.pytest_deselected(items=course)
        items[:] = graded


@pytest.fixture(autouse=True, scope="module")
def _graded_tests_run_on_one_thread(request):
    """Graded tests use tiny tensors: one thread is as fast, and far steadier when the grader
    runs several suites at once on a busy machine (threads waiting on each other made them 10x
    slower). The course checks, which train models, keep torch's default."""
    if COURSE_DIR in Path(request.fspath).parents:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _exercise_module(config: pytest.Config, name: str):
    workers = config.pluginmanager.get_plugin("grading-workers")
    if workers is not None:  # grading: the student's code runs in a worker, seen through a proxy
        return workers.module(name)
    return importlib.import_module(f"labs.{name}")


@pytest.fixture(scope="session")
def basics(pytestconfig):
    """The module under test for lab 1's basics: labs/basics.py (or solutions/basics.py)."""
    return _exercise_module(pytestconfig, "basics")


@pytest.fixture(scope="session")
def mlp(pytestconfig):
    """The module under test for lab 1's backpropagation: labs/mlp.py (or solutions/mlp.py)."""
    return _exercise_module(pytestconfig, "mlp")


@pytest.fixture(scope="session")
def conv(pytestconfig):
    """The module under test for lab 2: labs/conv.py (or solutions/conv.py)."""
    return _exercise_module(pytestconfig, "conv")


@pytest.fixture(scope="session")
def models(pytestconfig):
    """The module under test for labs 3 and 4: labs/models.py (or solutions/models.py)."""
    return _exercise_module(pytestconfig, "models")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST folder from LABS_DATA_DIR; tests that need real digits skip without it."""
    from labs.provided.data import mnist_available

    root = Path(os.environ.get("LABS_DATA_DIR", TESTS_DIR.parent / "data"))
    if not mnist_available(root):
        pytest.skip(f"no MNIST under {root}: set LABS_DATA_DIR or run `python -m labs download mnist`")
    return root
