"""Keep notebooks clean in git: no outputs, no execution counts.

    python -m labs.instructor.notebook_cleaning --clean notebooks/*.ipynb   # strip them in place
    python -m labs.instructor.notebook_cleaning --check notebooks/*.ipynb   # exit 1 if any is dirty
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat

# nbformat is imported where it is used: it takes seconds to import, and every pytest run
# imports this module at startup (conftest.py checks that each provided file imports).


def dirty_cells(notebook: nbformat.NotebookNode) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    return [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def clean(path: Path) -> bool:
    """Strip outputs and execution counts from one notebook; return True if it changed."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    if not dirty_cells(notebook):
        return False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(notebook, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs.instructor.notebook_cleaning", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report dirty notebooks instead of cleaning them")
    parser.add_argument("--clean", action="store_true", help="clean the notebooks in place (the default)")
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    import nbformat

    dirty = []
    for path in args.paths:
        if args.check:
            if dirty_cells(nbformat.read(path, as_version=4)):
                dirty.append(path)
        elif clean(path):
            print(f"cleaned {path}")
    for path in dirty:
        print(f"dirty: {path} (run python -m labs.instructor.notebook_cleaning --clean {path})")
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
