"""The course's lab package: the exercise modules you complete, and `labs.provided`.

Your files (exercise modules, one topic each):
    labs/basics.py   Lab 1  PyTorch basics: broadcasting, one-hot, a regression step
    labs/mlp.py      Lab 1  softmax, cross-entropy and backpropagation by hand
    labs/conv.py     Lab 2  convolutions and pooling by hand
    labs/models.py   Lab 3-4  LeNet-5 and AlexNet

Given to you, never edited by students:
    labs/provided/    what you import: settings, devices, seeding, data, training, plots, recipes
    labs/grader/      `python -m labs grade` and `labs.check()`: the autograder
    labs/instructor/  the instructor's tools (release, class grading, the Gradescope zip)
    labs/cli.py       the command line, `python -m labs ...`

`import labs.mlp` gives your own code. The reference solutions can stand in for the
exercise modules (the notebooks run that way in CI, and `pytest --impl solutions`):
set the environment variable LABS_IMPL=solutions before Python starts, or call
`labs.use_implementation("solutions")` before importing any exercise module. The reference is
the `solutions/` folder beside `labs/`; it need not be installed, and a hand-out may leave it out.
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the course's folder: labs/, solutions/, tests/ side by side
EXERCISE_MODULES = ("basics", "mlp", "conv", "models")
IMPLEMENTATIONS = ("labs", "solutions")

_active = "labs"


def use_implementation(impl: str) -> None:
    """Make `labs.<module>` resolve to the students' code ("labs") or to "solutions".

    Must run before any exercise module is imported: switching afterwards would leave
    two implementations mixed in one process, so it raises instead.
    """
    global _active
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {impl!r}")
    if impl == _active:
        return
    loaded = [name for name in EXERCISE_MODULES if f"labs.{name}" in sys.modules]
    if loaded:
        raise RuntimeError(
            f"cannot switch to {impl!r}: labs.{loaded[0]} is already imported from {_active!r}; "
            "call labs.use_implementation() before importing exercise modules"
        )
    if impl == "solutions":
        _find_solutions()
        for name in EXERCISE_MODULES:
            module = importlib.import_module(f"solutions.{name}")
            sys.modules[f"labs.{name}"] = module
            globals()[name] = module
    _active = impl


def _find_solutions() -> None:
    """Make `solutions` importable: installed, or else the folder beside `labs/` (not installed)."""
    if importlib.util.find_spec("solutions") is not None:
        return
    root = REPO_ROOT
    if not (root / "solutions" / "__init__.py").is_file():
        raise RuntimeError(
            "LABS_IMPL=solutions asks for the reference solutions, but this copy of the course has no "
            "solutions/ folder (hand-outs may leave it out); unset LABS_IMPL to use your own labs/"
        )
    sys.path.append(str(root))


def active_implementation() -> str:
    """Return "labs" or "solutions": where `labs.<module>` currently comes from."""
    return _active


try:
    use_implementation(os.environ.get("LABS_IMPL", "labs"))
except (ValueError, RuntimeError) as error:  # one clear line, not a traceback through `import labs`
    raise SystemExit(f"error: {error}") from None


def check(*exercises: str):
    """Grade your current labs/ files from a notebook: `check("1.4")`, or `check()` for everything.

    The same tests and verdicts as `python -m labs grade`; see labs/grader/trusted/check.py.
    """
    from labs.grader.trusted.check import check as run_check

    return run_check(*exercises)
