"""Every notebook is stored clean and runs top to bottom, headless, in fast mode."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labs.provided.data import mnist_available
from labs import REPO_ROOT
from labs.instructor.notebook_cleaning import dirty_cells
from labs.provided.settings import data_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _code(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _execute(path: Path, impl: str, monkeypatch) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel as CI does: fast mode, the chosen implementation."""
    monkeypatch.setenv("LABS_FAST", "1")
    monkeypatch.setenv("LABS_IMPL", impl)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()
    return notebook


def test_the_course_has_its_five_notebooks():
    names = [path.name[:2] for path in NOTEBOOKS]
    assert names == ["00", "01", "02", "03", "04"], f"expected notebooks 00 to 04, found {[p.name for p in NOTEBOOKS]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    dirty = dirty_cells(nbformat.read(path, as_version=4))
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run python -m labs.instructor.notebook_cleaning --clean {path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_imports_graded_code_instead_of_defining_it(path):
    from labs.grader.catalog import load_catalog

    defined = set(re.findall(r"^\s*(?:def|class)\s+(\w+)", _code(nbformat.read(path, as_version=4)), re.MULTILINE))
    graded = {function.split(".")[0] for exercise in load_catalog() for function in exercise.functions}
    assert not defined & graded, f"{path.name} defines graded code itself: {sorted(defined & graded)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs_top_to_bottom_in_fast_mode(path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    if re.search(r"mnist", _code(notebook), re.IGNORECASE) and not mnist_available(data_dir()):
        pytest.skip(f"{path.name} needs MNIST: none under {data_dir()}; set LABS_DATA_DIR or run `python -m labs download mnist`")
    executed = _execute(path, "solutions", monkeypatch)
    errors = [out for cell in executed.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name} printed an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"


@pytest.mark.slow
def test_a_notebook_stops_at_the_first_unfinished_exercise_with_its_message(monkeypatch):
    """Against the stubs, notebook 00 stops at its first exercise and shows what to do."""
    with pytest.raises(CellExecutionError) as stopped:
        _execute(NOTEBOOK_DIR / "00_pytorch_basics.ipynb", "labs", monkeypatch)
    message = str(stopped.value)
    assert "NotImplementedError" in message and re.search(r"Exercise 1\.\d+ ", message), message[-2000:]
