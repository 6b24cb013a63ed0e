"""`labs.check()`: the grader's verdicts from a notebook cell, on the files as they are now."""

from __future__ import annotations

import json
import textwrap

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


def test_check_gives_grades_points_and_sees_an_edit_without_a_restart(tmp_path):
    root = _course_copy(tmp_path / "course")
    for module in EXERCISE_MODULES:
        (root / "labs" / f"{module}.py").write_text((REPO_ROOT / "solutions" / f"{module}.py").read_text())
    graded = _python(root, "-m", "labs", "grade", "1.4", "--json", str(tmp_path / "r.json"), LABS_IMPL="labs")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    grade_points = json.loads((tmp_path / "r.json").read_text())["score"]
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
