"""Every notebook is stored clean and runs top to bottom, headless, in fast mode."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from labs.provided.data import mnist_available
from labs import REPO_ROOT
from labs.instructor.notebook_cleaning import dirty_cells
from labs.provided.settings import data_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def _code(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def _execute(path: Path, impl: str, monkeypatch) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel as CI does: fast mode, the chosen implementation
    ("labs": LABS_IMPL unset, the students' stubs), the check("1.4") cells skipped."""
    monkeypatch.setenv("LABS_FAST", "1")
    if impl == "labs":
        monkeypatch.delenv("LABS_IMPL", raising=False)
    else:
        monkeypatch.setenv("LABS_IMPL", impl)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("LABS_SKIP_CHECKS", "1")  # check() runs an exercise's tests: the graded tests do that, not this check
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


def _run_top_to_bottom(path: Path, impl: str, monkeypatch) -> list[str]:
    """Execute the notebook (skipping where it needs MNIST and there is none); return its printed lines."""
    notebook = nbformat.read(path, as_version=4)
    if re.search(r"mnist", _code(notebook), re.IGNORECASE) and not mnist_available(data_dir()):
        pytest.skip(f"{path.name} needs MNIST: none under {data_dir()}; set LABS_DATA_DIR or run `python -m labs download mnist`")
    executed = _execute(path, impl, monkeypatch)
    errors = [out for cell in executed.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name} printed an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return [line for cell in executed.cells for out in cell.get("outputs", []) if out.get("output_type") == "stream"
            for line in out.get("text", "").splitlines()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs_top_to_bottom_in_fast_mode(path, monkeypatch):
    _run_top_to_bottom(path, "solutions", monkeypatch)


# The exercise each notebook meets first, on the untouched stubs.
FIRST_EXERCISE = {"00": "1.1", "01": "1.4", "02": "2.1", "03": "3.1", "04": "4.1"}
NOT_WRITTEN = re.compile(r'Exercise (\d+\.\d+) \((\S+)\) is not written yet: write it in labs/\w+\.py, then run check\("\1"\)')
WAITS = re.compile(r"This cell waits for exercise (\d+\.\d+) \((\S+)\): write it in labs/\w+\.py, then run the cells above again")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_the_stubs_naming_each_unwritten_exercise(path, monkeypatch):
    """Run All on a fresh hand-out: every unwritten exercise is one line, and the notebook goes on."""
    lines = _run_top_to_bottom(path, "labs", monkeypatch)
    said = [line for line in lines if "not written yet" in line or "waits for exercise" in line]
    odd = [line for line in said if not (NOT_WRITTEN.fullmatch(line) or WAITS.fullmatch(line))]
    assert not odd, f"{path.name}: lines about unwritten exercises in an unexpected form: {odd}"
    assert said and NOT_WRITTEN.fullmatch(said[0]) and NOT_WRITTEN.fullmatch(said[0])[1] == FIRST_EXERCISE[path.name[:2]], (
        f"{path.name}: on the stubs, its first line should name exercise {FIRST_EXERCISE[path.name[:2]]}, got {said[:1]}")


def test_each_by_hand_exercise_says_its_rule_where_the_notebook_introduces_it():
    from labs.grader.trusted.by_hand import RULES

    text = " ".join(" ".join(cell.source.split()) for path in NOTEBOOKS for cell in nbformat.read(path, as_version=4).cells
                    if cell.cell_type == "markdown")
    for exercise, rule in RULES.items():
        note = " ".join(rule.allowed_note.split())
        assert re.search(rf"Written by hand\*\* \(exercises? [0-9. and]*{re.escape(exercise)}", text), f"no notebook says that {exercise} is written by hand"
        assert note in text, f"the notebooks do not give the rule of exercise {exercise}"
