"""Deliberately wrong implementations: one small edit of a reference solution each.

A wrong implementation names the exercise it breaks and a text edit (`old` -> `new`) of
`solutions/<module>.py`. The course checks grade a submission made of the solutions with one
edit applied, and assert that the grader takes points from that exercise and from no other.
`old` must occur exactly once, so an edit cannot silently stop applying when a solution changes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from labs import EXERCISE_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WrongImplementation:
    name: str  # what is wrong, in a few words
    exercise: str  # the exercise id it breaks, e.g. "2.4"
    module: str  # the exercise module it edits, e.g. "conv"
    old: str  # text of solutions/<module>.py to replace, occurring exactly once
    new: str  # the wrong text
    says: str = ""  # words the grader's first failure in that exercise must contain, if any

    def write_submission(self, folder: Path) -> Path:
        """Write every exercise module into `folder`: the solutions, with this edit applied."""
        folder.mkdir(parents=True, exist_ok=True)
        for module in EXERCISE_MODULES:
            shutil.copy(REPO_ROOT / "solutions" / f"{module}.py", folder / f"{module}.py")
        path = folder / f"{self.module}.py"
        source = path.read_text()
        if source.count(self.old) != 1:
            raise AssertionError(
                f"wrong implementation {self.name!r}: the text to replace occurs {source.count(self.old)} "
                f"times in solutions/{self.module}.py (expected once); update the edit"
            )
        path.write_text(source.replace(self.old, self.new))
        return folder
