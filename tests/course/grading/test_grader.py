"""The grader grades what it should, and only that.

Each grading run is a child pytest process over the whole graded suite, so the runs are
started together once per session (two at a time) and the tests below read their results.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labs.grader.trusted.runner import grade
from labs.grader.catalog import load_catalog
from tests.course.fixtures.mutation import REPO_ROOT, WrongImplementation

CATALOG = load_catalog()
WRONG = [
    wrong
    for path in sorted((Path(__file__).parents[1] / "fixtures").glob("wrong_*.py"))
    for wrong in importlib.import_module(f"tests.course.fixtures.{path.stem}").WRONG
]
MISBEHAVING_EDITS = [  # in solutions/basics.py: print megabytes (1.1), hang (1.2), kill the process (1.3)
    ("    differences = X[:, None, :]", '    print("spam " * 1_000_000)\n    differences = X[:, None, :]'),
    ("    Y = torch.zeros(y.shape[0], num_classes, device=y.device)  # (N, C)", "    while True:\n        pass"),
    ("    loss = ((X @ w + b - y) ** 2).mean()", "    import os\n    os._exit(3)"),
]

NO_KEEPDIM_EDIT = ("return exp / exp.sum(dim=dim, keepdim=True)", "return exp / exp.sum(dim=dim)")  # solutions/mlp.py


def _grade_cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "labs", "grade", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)


def _misbehaving_submission(folder: Path) -> Path:
    folder.mkdir()
    for module in ("basics", "mlp", "conv", "models"):
        shutil.copy(REPO_ROOT / "solutions" / f"{module}.py", folder / f"{module}.py")
    source = (folder / "basics.py").read_text()
    for old, new in MISBEHAVING_EDITS:
        assert source.count(old) == 1, f"misbehaving edit no longer applies to solutions/basics.py: {old!r}"
        source = source.replace(old, new)
    (folder / "basics.py").write_text(source)
    return folder


def _edited_solutions(folder: Path, module: str, old: str, new: str) -> Path:
    folder.mkdir()
    for name in ("basics", "mlp", "conv", "models"):
        shutil.copy(REPO_ROOT / "solutions" / f"{name}.py", folder / f"{name}.py")
    source = (folder / f"{module}.py").read_text()
    assert source.count(old) == 1, f"edit no longer applies to solutions/{module}.py: {old!r}"
    (folder / f"{module}.py").write_text(source.replace(old, new))
    return folder


def _partial_submission_with_its_own_tests(folder: Path) -> Path:
    """Only basics.py, plus test files that would pass everything if they were used."""
    folder.mkdir()
    shutil.copy(REPO_ROOT / "solutions" / "basics.py", folder / "basics.py")
    (folder / "tests").mkdir()
    (folder / "tests" / "conftest.py").write_text("def pytest_collection_modifyitems(items):\n    items.clear()\n")
    (folder / "tests" / "test_mlp.py").write_text("def test_everything():\n    assert True\n")
    (folder / "conftest.py").write_text("import pytest\n@pytest.fixture(autouse=True)\ndef cheat():\n    pytest.skip('cheat')\n")
    return folder


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict:
    """Every grading run the tests below need, run two at a time."""
    base = tmp_path_factory.mktemp("submissions")
    json_path = base / "stubs.json"
    jobs = {
        # the stubs, graded while LABS_IMPL=solutions is set: the grader must still run labs/
        "stubs": lambda: _grade_cli("--json", str(json_path), env_extra={"LABS_IMPL": "solutions"}),
        "solutions": lambda: grade(REPO_ROOT / "solutions", timeout=300),
        "misbehaving": lambda: grade(_misbehaving_submission(base / "misbehaving"), timeout=10),
        "partial": lambda: grade(_partial_submission_with_its_own_tests(base / "partial"), timeout=300),
        "no-keepdim": lambda: grade(_edited_solutions(base / "no-keepdim", "mlp", *NO_KEEPDIM_EDIT), ["1.4"], timeout=300),
    }
    for wrong in WRONG:
        folder = base / f"wrong-{wrong.module}-{wrong.name.replace(' ', '-')}"
        jobs[wrong.name] = lambda wrong=wrong, folder=folder: grade(wrong.write_submission(folder), timeout=300)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
    results["stubs_json"] = json.loads(json_path.read_text()) if json_path.exists() else None
    return results


def _points(report) -> dict[str, tuple[float, float]]:
    return {result.exercise.id: (result.earned, result.possible) for result in report.exercises}


def test_grading_the_stubs_lists_every_exercise_with_zero_points(runs):
    process = runs["stubs"]
    assert process.returncode == 0, f"grading the stubs should exit 0 (graded), got {process.returncode}:\n{process.stderr}"
    for exercise in CATALOG:
        row = next((line for line in process.stdout.splitlines() if line.split()[:1] == [exercise.id]), None)
        assert row is not None, f"exercise {exercise.id} is missing from the grader's table:\n{process.stdout}"
        assert f" 0/" in row, f"a stub should earn 0 points, row: {row}"
    assert "Total: 0 /" in process.stdout


def test_grading_labs_runs_the_students_code_and_not_the_solutions(runs):
    """Even with LABS_IMPL=solutions in the environment, the stubs earn nothing and say why."""
    results = runs["stubs_json"]
    assert results["score"] == 0, "grading labs/ while LABS_IMPL=solutions was set gave points: it ran the solutions"
    for exercise in CATALOG:
        messages = [t["output"] for t in results["tests"] if t["number"] == exercise.id]
        assert messages, f"no graded test for exercise {exercise.id}"
        assert any(f"NotImplementedError: Exercise {exercise.id} " in m for m in messages), (
            f"no failing test of exercise {exercise.id} shows its stub's NotImplementedError; first: {messages[0]}"
        )


def test_grading_the_solutions_as_a_submission_gives_full_marks(runs):
    for exercise_id, (earned, possible) in _points(runs["solutions"]).items():
        assert possible > 0, f"exercise {exercise_id} has no graded test"
        failure = runs["solutions"].by_id()[exercise_id].first_failure
        assert earned == possible, f"the reference loses points in exercise {exercise_id}: {failure and failure.message}"


def test_json_output_has_gradescopes_shape(runs):
    """One visible entry per exercise, no more (test_report.py checks the hidden entries)."""
    results = runs["stubs_json"]
    assert set(results) >= {"score", "max_score", "execution_time", "output", "tests"}
    assert isinstance(results["score"], (int, float)) and isinstance(results["max_score"], (int, float))
    assert results["max_score"] == pytest.approx(runs["solutions"].max_score)
    assert 0 < results["execution_time"] < 900, f"execution_time should be the seconds grading took: {results['execution_time']}"
    assert [t["number"] for t in results["tests"]] == [exercise.id for exercise in CATALOG], "not one entry per exercise, in order"
    for test in results["tests"]:
        assert set(test) >= {"name", "number", "score", "max_score", "status", "output", "visibility"}, f"an entry lacks fields: {test}"
        assert test["visibility"] == "visible" and test["status"] == "failed"
        assert 0 == test["score"] < test["max_score"]
        assert test["extra_data"]["execution_time"] >= 0
    assert sum(t["max_score"] for t in results["tests"]) == pytest.approx(results["max_score"], abs=1e-3)


@pytest.mark.parametrize("wrong", WRONG, ids=[w.name for w in WRONG])
def test_each_wrong_implementation_loses_points_in_its_exercise_only(runs, wrong: WrongImplementation):
    points = _points(runs[wrong.name])
    full = _points(runs["solutions"])
    earned, possible = points[wrong.exercise]
    assert earned < possible, f"{wrong.name!r} should fail exercise {wrong.exercise}, but it earned full marks"
    others = {ex: p for ex, p in points.items() if ex != wrong.exercise and p != full[ex]}
    assert not others, f"{wrong.name!r} breaks exercise {wrong.exercise} only, yet these lost points too: {others}"
    failure = runs[wrong.name].by_id()[wrong.exercise].first_failure
    assert wrong.says in failure.message, f"{wrong.name!r}: the first failure should say {wrong.says!r}, it says: {failure.message}"


def test_the_wrong_implementations_cover_what_the_course_promises():
    names = " ".join(w.name for w in WRONG)
    for promised in ("flip", "same", "overlapping", "overflow", "derivative"):
        assert promised in names, f"no wrong implementation about {promised!r} among: {names}"


def test_code_that_prints_hangs_or_crashes_costs_only_its_own_points(runs):
    report = runs["misbehaving"]
    points, full = _points(report), _points(runs["solutions"])
    assert points["1.1"] == full["1.1"], "printing megabytes is not wrong in itself: 1.1 keeps its points"
    assert all(len(test.output) <= 5000 for test in report.by_id()["1.1"].tests), "captured output should be cut short"
    assert points["1.2"][0] == 0 and "time limit" in report.by_id()["1.2"].first_failure.message
    assert points["1.3"][0] == 0 and "crashed" in report.by_id()["1.3"].first_failure.message
    others = {ex: p for ex, p in points.items() if ex not in {"1.1", "1.2", "1.3"} and p != full[ex]}
    assert not others, f"other exercises lost points: {others}"


def test_a_submissions_own_test_files_change_nothing_and_missing_modules_score_zero(runs):
    report = runs["partial"]
    for result in report.exercises:
        if result.exercise.module == "basics":
            assert result.earned == result.possible, f"basics.py was submitted, yet {result.exercise.id} lost points"
        else:
            assert result.earned == 0, f"{result.exercise.module}.py was not submitted, yet {result.exercise.id} earned points"
            assert "missing from the submission" in result.first_failure.message


def test_a_failing_property_test_shows_its_smallest_failing_case(runs):
    """A softmax without keepdim: the hypothesis test's feedback names the case, not just the error."""
    failed = [t for t in runs["no-keepdim"].by_id()["1.4"].tests if not t.passed and "along_any_dim" in t.function]
    assert failed, "a softmax without keepdim=True should fail the property test along any dim"
    message = failed[0].message
    assert "Failing test case" in message or "Falsifying example" in message, f"no failing case in: {message}"
    assert "shape=" in message and "has shape" in message, f"the case and the error should both show: {message}"


@pytest.mark.slow
def test_bad_grader_arguments_exit_2_with_a_reason(tmp_path):
    process = _grade_cli("--submission", str(tmp_path / "nowhere"))
    assert process.returncode == 2 and "does not exist" in process.stderr
    process = _grade_cli("9.9")
    assert process.returncode == 2 and "unknown exercise" in process.stderr


@pytest.mark.slow
def test_a_definition_that_raises_costs_only_the_exercises_that_use_it(tmp_path):
    """A careless default argument (`eps=EPS`, never defined) in cross_entropy once made mlp.py fail
    to import and cost every exercise of the module; now only 1.5, whose function it is."""
    for module in ("basics", "mlp", "conv", "models"):
        shutil.copy(REPO_ROOT / "solutions" / f"{module}.py", tmp_path / f"{module}.py")
    mlp = tmp_path / "mlp.py"
    signature = "def cross_entropy(logits: Tensor, targets: Tensor"
    assert mlp.read_text().count(signature) == 1, "solutions/mlp.py's cross_entropy changed: update the signature here"
    mlp.write_text(mlp.read_text().replace(signature, signature + ", eps: float = EPS_NEVER_DEFINED"))
    line = next(n for n, text in enumerate(mlp.read_text().splitlines(), 1) if text.startswith(signature))
    report = grade(tmp_path, ["1.4", "1.5", "1.6"]).by_id()
    assert report["1.4"].earned == report["1.4"].possible > 0 and report["1.6"].earned == report["1.6"].possible > 0, \
        f"exercises that do not use cross_entropy lost points: {[(i, r.earned, r.possible) for i, r in report.items()]}"
    assert report["1.5"].earned == 0
    message = report["1.5"].first_failure.message
    assert f"cross_entropy could not be defined: line {line} of labs/mlp.py raised NameError" in message, message
