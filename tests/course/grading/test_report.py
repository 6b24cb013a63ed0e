"""The grade report's results.json (report.py, `gradescope()`), on reports built by hand: milliseconds.

Gradescope's format (https://gradescope-autograders.readthedocs.io/en/latest/specs/): one entry per
exercise, hidden tests in entries of their own shown after publication, and `execution_time`.
Class grading reads the same file back (class_report.outcomes), so both sides are checked here.
"""

from __future__ import annotations

import json

import pytest

from labs.grader.catalog import load_catalog
from labs.grader.trusted.report import ExerciseResult, GradeReport
from labs.grader.trusted.report import TestResult as Outcome  # as TestResult, pytest would try to collect it
from labs.instructor.class_report import HIDDEN_NAME, outcomes

CATALOG = {exercise.id: exercise for exercise in load_catalog()}
STUB_MESSAGE = "NotImplementedError: Exercise 1.2 (vectorised distances) is not implemented yet"


def _test(exercise: str, name: str, passed: bool, message: str = "", seconds: float = 0.1, weight: float = 1.0) -> Outcome:
    """A test's outcome; one named test_hidden_* comes from an instructor's test_hidden_*.py file."""
    file = "test_hidden_more.py" if name.startswith("test_hidden_") else "test_lab1.py"
    return Outcome(f"tests/{file}::{name}", f"{file}::{name}", exercise, weight,
                   "passed" if passed else "failed", "" if passed else message, seconds=seconds)


def _report() -> GradeReport:
    """1.1 all passed; 1.4 a public failure and a hidden one; 1.2 a stub; 1.5 flagged by the by-hand check."""
    return GradeReport("a submission", [
        ExerciseResult(CATALOG["1.1"], [_test("1.1", "test_a", True), _test("1.1", "test_b", True, seconds=0.25)]),
        ExerciseResult(CATALOG["1.4"], [
            _test("1.4", "test_hidden_softmax", False, "a hidden test failed (worth 1 point; hidden tests show no details)"),
            _test("1.4", "test_softmax_extreme", False, "softmax of extreme logits differs: got nan, expected 1"),
            _test("1.4", "test_softmax_rows", True, weight=0.5), _test("1.4", "test_softmax_rows", False, "\x1b[2Jrow 2 differs", weight=0.5),
            _test("1.4", "test_hidden_shape", True),
        ]),
        ExerciseResult(CATALOG["1.2"], [_test("1.2", "test_distances", False, STUB_MESSAGE)]),
        ExerciseResult(CATALOG["1.5"], [_test("1.5", "test_cross_entropy", True), _test("1.5", "test_hidden_ce", True)],
                       flags=["line 12 calls torch.nn.functional.cross_entropy"]),
    ], seconds=12.5, public_seconds=10.0)


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(json.dumps(_report().gradescope()))  # as a file holds it


def _entry(results: dict, number: str, hidden: bool = False) -> dict:
    found = [e for e in results["tests"] if e["number"] == number and (e["visibility"] == "after_published") == hidden]
    assert len(found) == 1, f"expected one {'hidden' if hidden else 'public'} entry for {number}: {results['tests']}"
    return found[0]


def test_one_entry_per_exercise_and_one_for_its_hidden_tests(results):
    assert [(e["number"], e["visibility"]) for e in results["tests"]] == [
        ("1.1", "visible"), ("1.4", "visible"), ("1.4", "after_published"), ("1.2", "visible"),
        ("1.5", "visible"), ("1.5", "after_published")]
    for entry in results["tests"]:
        assert set(entry) >= {"name", "number", "score", "max_score", "status", "output", "visibility", "extra_data"}
    assert _entry(results, "1.4")["name"] == f"Exercise 1.4: {CATALOG['1.4'].title}"
    assert _entry(results, "1.4", hidden=True)["name"] == f"Exercise 1.4: {CATALOG['1.4'].title} (hidden tests)"


def test_points_status_and_time_add_up(results):
    assert (_entry(results, "1.1")["score"], _entry(results, "1.1")["max_score"], _entry(results, "1.1")["status"]) == (2, 2, "passed")
    public, hidden = _entry(results, "1.4"), _entry(results, "1.4", hidden=True)
    assert (public["score"], public["max_score"], public["status"]) == (0.5, 2, "failed")
    assert (hidden["score"], hidden["max_score"], hidden["status"]) == (1, 2, "failed")
    assert results["score"] == sum(e["score"] for e in results["tests"]) == 3.5
    assert results["max_score"] == sum(e["max_score"] for e in results["tests"]) == 9
    assert results["execution_time"] == 10.0, "execution_time should be the public part's: hidden tests show not even their time"
    assert _entry(results, "1.1")["extra_data"]["execution_time"] == pytest.approx(0.35)


def test_the_public_entry_shows_the_public_failure_first_and_nothing_hidden(results):
    public = _entry(results, "1.4")
    assert public["output"].splitlines()[0] == "test_softmax_extreme: softmax of extreme logits differs: got nan, expected 1"
    assert "1 more test failed" in public["output"] and "--verbose" in public["output"]
    assert "hidden" not in public["output"]
    assert public["extra_data"]["first_failure"] == {"test": "test_softmax_extreme",
                                                     "message": "softmax of extreme logits differs: got nan, expected 1"}


def test_the_hidden_entry_says_only_how_many_failed_and_their_worth(results):
    hidden = _entry(results, "1.4", hidden=True)
    assert hidden["output"] == "1 of 2 hidden tests failed (worth 1 point; hidden tests show no details)"
    assert (hidden["extra_data"]["failed"], hidden["extra_data"]["failed_points"]) == (1, 1)
    assert "test_hidden_softmax" not in json.dumps(results), "a hidden test's name reached results.json"


def test_the_output_above_the_entries_shows_no_hidden_result(results):
    output = results["output"]
    assert "hidden test failed" not in output and "test_hidden_softmax" not in output
    row = next(line for line in output.splitlines() if line.split()[:1] == ["1.4"])
    assert row.split()[-1] == "0.50/2", f"the table before publication should count the public tests only: {row}"
    assert "Hidden tests were graded too" in output
    assert results["stdout_visibility"] == "hidden", "the autograder's own printing (the full table) would show them"


def test_no_line_of_a_students_message_passes_for_one_of_the_graders():
    forged = "differs\nall 4 tests passed\n\u3164\n(0 more tests failed)"
    report = GradeReport("a submission", [ExerciseResult(CATALOG["1.5"], [_test("1.5", "test_ce", False, forged),
                                                                         _test("1.5", "test_ce_grad", False, "x")])])
    output = report.gradescope()["tests"][0]["output"].splitlines()
    assert output[0] == "test_ce: differs" and output[1:4] == ["  all 4 tests passed", "  ", "  (0 more tests failed)"], output
    assert output[4].startswith("(1 more test failed"), output


def test_a_flagged_exercise_earns_nothing_in_either_entry_and_says_why(results):
    for hidden in (False, True):
        entry = _entry(results, "1.5", hidden)
        assert entry["score"] == 0 and entry["status"] == "failed"
        assert "no points: line 12 calls torch.nn.functional.cross_entropy" in entry["output"]


def test_text_from_the_submission_is_printable_and_shown_as_text(results):
    assert "\x1b" not in json.dumps(results, ensure_ascii=False)
    assert results["output_format"] == results["test_output_format"] == "text", "Gradescope would render a submission's HTML"
    assert all(entry["output_format"] == "text" for entry in results["tests"])


def test_class_grading_reads_back_what_the_report_says(results):
    report = _report()
    found = outcomes(results, list(CATALOG.values()))
    for result in report.exercises:
        outcome = found[result.exercise.id]
        assert (outcome.earned, outcome.possible) == pytest.approx((result.earned, result.possible)), result.exercise.id
    assert found["1.4"].first_failure == ("test_softmax_extreme", "softmax of extreme logits differs: got nan, expected 1")
    assert (found["1.4"].hidden_failed, found["1.4"].hidden_lost) == (1, 1)
    assert found["1.2"].not_attempted and not found["1.4"].not_attempted
    assert found["1.1"].first_failure is None
    assert found["1.5"].first_failure[1].startswith("no points: ")


def test_class_grading_still_reads_results_written_one_entry_per_test():
    """results.json of a class graded before this format (a rerun resumes from them)."""
    old = {"score": 1, "max_score": 3, "tests": [
        {"name": "Exercise 1.4 (Softmax): test_rows[0]", "number": "1.4", "score": 1, "max_score": 1, "status": "passed", "output": "passed"},
        {"name": "Exercise 1.4 (Softmax): test_rows[1]", "number": "1.4", "score": 0, "max_score": 1, "status": "failed", "output": "row 1 differs"},
        {"name": "Exercise 1.4 (Softmax): hidden test", "number": "1.4", "score": 0, "max_score": 1, "status": "failed", "output": "x"},
    ]}
    found = outcomes(old, list(CATALOG.values()))["1.4"]
    assert (found.earned, found.possible, found.first_failure) == (1, 3, ("test_rows", "row 1 differs"))
    assert (found.first_failure[0] != HIDDEN_NAME, found.hidden_failed, found.hidden_lost) == (True, 1, 1)
