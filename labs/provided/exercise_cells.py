"""Notebook cells that run before their exercise is written, so that Run All goes top to bottom.

A cell that calls an exercise runs inside `with exercise("1.4"):`. While the exercise is still
a stub, its NotImplementedError becomes one line, and the notebook goes on:

    Exercise 1.4 (softmax) is not written yet: write it in labs/mlp.py, then run check("1.4")

A later cell that uses what such a cell computed (a trained network, a history to plot) starts
with `if ready("1.4"):`. Until the cell labelled "1.4" has run through, `ready` prints the one
line below and the cell is skipped:

    This cell waits for exercise 1.4 (softmax): write it in labs/mlp.py, then run the cells above again

A label is the id of the exercise the cell shows (the notebook's heading); the line always names
the exercise that is actually missing, which may be an earlier one (a forward pass needs 1.9's
initialisation). Any other error is shown in full, as usual.

`check_from_terminal` stands in for `labs.check` in a copy of the course without it.
`COURSE_REPOSITORY` is where Colab clones the course from (see the notebooks' first cell).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# Where the notebooks' "Open in Colab" badges and their first (Colab-only) cell fetch the course.
# That cell runs before the course is installed, so it cannot import this constant: each notebook
# repeats it, and tests/course/student/test_notebook_loop.py fails, naming every copy to change,
# when one differs from this line. To move the course: change this line, then replace the old URL
# in notebooks/*.ipynb (the failing check prints the command).
COURSE_REPOSITORY = "https://github.com/cnn-course/cnn-labs"

# The message of every stub, as `python -m labs release` writes it, e.g.
# "Exercise 1.4 (Softmax and log-softmax): `softmax` in labs/mlp.py is not implemented yet"
STUB_MESSAGE = re.compile(r"Exercise (?P<id>\d+\.\d+) \((?P<title>.*)\): `(?P<name>[^`]+)` in (?P<path>\S+) is not implemented yet")


@dataclass(frozen=True)
class Unwritten:
    """An exercise that is still a stub: its id, the function to write and the file it is in."""

    id: str  # "1.4"
    name: str  # "softmax", or "LeNet5.__init__" for a method
    path: str  # "labs/mlp.py"


def unwritten(error: BaseException) -> Unwritten | None:
    """The exercise a stub's NotImplementedError names, or None for any other error."""
    match = STUB_MESSAGE.search(str(error)) if isinstance(error, NotImplementedError) else None
    return Unwritten(match["id"], match["name"], match["path"]) if match else None


_stopped: dict[str, Unwritten] = {}  # label of a cell that stopped at a stub -> the exercise it stopped at


@contextmanager
def exercise(label: str) -> Iterator[None]:
    """Run a cell's code; at an unwritten exercise, say in one line what to write, and go on.

    Args:
        label: the exercise the cell shows, e.g. "1.4"; `ready(label)` asks later whether the
            cell ran through.
    """
    figures = _open_figures()
    try:
        yield
    except NotImplementedError as error:
        missing = unwritten(error)
        if missing is None:
            raise  # not a stub's: a real error, shown in full
        _close_figures_since(figures)  # no half-drawn, empty plot
        _stopped[label] = missing
        print(f'Exercise {missing.id} ({missing.name}) is not written yet: write it in {missing.path}, then run check("{missing.id}")')
    else:
        _stopped.pop(label, None)


def ready(*labels: str) -> bool:
    """True when the last cell run under each label ran through; otherwise say what it waits for.

    A label no cell has used yet counts as ready: the cell then runs, and a name it lacks is an
    ordinary NameError (run the cells above first).
    """
    for label in labels:
        missing = _stopped.get(label)
        if missing is not None:
            print(f"This cell waits for exercise {missing.id} ({missing.name}): write it in {missing.path}, then run the cells above again")
            return False
    return True


def check_from_terminal(exercise_id: str) -> None:
    """Stand-in for `labs.check` where the course has none: say how to check from a terminal.

    Honours LABS_SKIP_CHECKS=1 (set by the course checks that run every notebook headless), as
    `labs.check` does.
    """
    if os.environ.get("LABS_SKIP_CHECKS", "").strip().lower() in {"1", "true", "yes"}:
        print(f"check({exercise_id!r}) skipped: LABS_SKIP_CHECKS is set")  # as labs.check words it
        return
    print(f"To check exercise {exercise_id}, run in a terminal, in the course's folder: python -m labs grade {exercise_id}")


def _open_figures() -> set[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")  # never imported here: a notebook without plots stays without
    return set(pyplot.get_fignums()) if pyplot is not None else set()


def _close_figures_since(before: set[int]) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        for number in set(pyplot.get_fignums()) - before:
            pyplot.close(number)
