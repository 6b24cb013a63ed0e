"""The exercises: ids, titles, modules and functions, as `python -m labs release` generates them.

`exercises.json` beside this file is written by release from the solutions' markers, so ids and
titles live in one place; the grader, the class report and the tests read it through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from labs import REPO_ROOT

CATALOG_FILE = Path("labs", "grader", "exercises.json")  # where release writes it, under the course's folder
CATALOG_PATH = REPO_ROOT / CATALOG_FILE
GRADED_TESTS = "tests/*.py"  # the graded tests: test_<topic>.py with their conftest and helpers; not tests/course/


@dataclass
class Exercise:
    id: str
    title: str
    module: str
    functions: list[str] = field(default_factory=list)

    @property
    def marker(self) -> str:
        """The pytest marker that grades this exercise: "1.4" -> "ex1_4"."""
        return "ex" + self.id.replace(".", "_")


def load_catalog(path: Path = CATALOG_PATH) -> list[Exercise]:
    """The exercises, in course order, as generated from the solutions."""
    return [Exercise(**entry) for entry in json.loads(path.read_text())]


def graded_test_files(root: Path = REPO_ROOT) -> list[Path]:
    """The files of the graded tests under `root` (the course's own tests, never a submission's)."""
    return sorted(root.glob(GRADED_TESTS))
