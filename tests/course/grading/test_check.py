"""`labs.check()`: the grader's verdicts from a notebook cell (a real Jupyter kernel), on the files as they are now."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES, REPO_ROOT
from tests.course.student.test_student_paths import _course_copy, _python

pytestmark = pytest.mark.slow  # a checking process and a grading, each importing torch

SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    from labs import check
    mlp = pathlib.Path("labs/mlp.py")
    first = check("1.4")
    mlp.write_text(mlp.read_text().replace("return exp / exp.sum(dim=dim, keepdim=True)", "return exp"))
    second = check("1.4")  # the same kernel: the edit must be seen
    print(json.dumps({"first": [first.score, first.max_score], "second": [second.score, second.max_score],
                      "problems": second["1.4"].problems, "html": second._repr_html_(), "table": str(second)}))
""")


def _check_in_a_kernel(root: Path, monkeypatch) -> str:
    """check("1.4") as a notebook cell's last expression, in a Jupyter kernel started in `root`: its text/html."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PYTHONPATH", str(root))  # the kernel imports the copy's labs/
    monkeypatch.setenv("LABS_IMPL", "labs")
    monkeypatch.delenv("LABS_SKIP_CHECKS", raising=False)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell('import labs\nassert labs.__file__.startswith(%r), labs.__file__' % str(root)),
                      nbformat.v4.new_code_cell("from labs import check\ncheck('1.4')")]
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    shown = [output for output in notebook.cells[1].outputs if output.output_type == "execute_result"]
    assert shown and "text/html" in shown[0].data, f"check() showed no HTML table: {notebook.cells[1].outputs}"
    return shown[0].data["text/html"]


def test_check_gives_grades_points_and_sees_an_edit_without_a_restart(tmp_path, monkeypatch):
    root = _course_copy(tmp_path / "course")
    for module in EXERCISE_MODULES:
        (root / "labs" / f"{module}.py").write_text((REPO_ROOT / "solutions" / f"{module}.py").read_text())
    graded = _python(root, "-m", "labs", "grade", "1.4", "--json", str(tmp_path / "r.json"), LABS_IMPL="labs")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    grade_points = json.loads((tmp_path / "r.json").read_text())["score"]
    html = _check_in_a_kernel(root, monkeypatch)
    assert html.startswith("<table>") and f"<b>Total: {grade_points:g} / {grade_points:g} points</b>" in html, html
    process = _python(root, "-c", SCRIPT, LABS_IMPL="labs")
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result["first"][0] == result["first"][1] == grade_points, f"check() and grade disagree: {result['first']} vs {grade_points}"
    assert result["second"][0] < result["second"][1], "check() did not see the edit to labs/mlp.py"
    assert any("softmax" in line for line in result["problems"]), result["problems"]
    assert result["html"].startswith("<table>") and "<script" not in result["html"]
    assert "Total:" in result["table"]


def test_check_is_skipped_where_the_course_runs_its_notebooks(tmp_path):
    process = _python(REPO_ROOT, "-c", "from labs import check; print(check('1.4'))", LABS_SKIP_CHECKS="1", LABS_IMPL="labs")
    assert process.returncode == 0 and "skipped" in process.stdout and "None" in process.stdout, process.stdout + process.stderr
