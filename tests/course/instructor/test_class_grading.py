"""`python -m labs grade-class`, tried as an instructor would: a small mixed class, hidden tests,
an interrupted run resumed, and the files it leaves (feedback, grades.csv, the class report).

Grading is the slow part (a submission takes 10-30 s on two busy cores), so the class is small,
only exercises 1.1 and 1.4 are graded, and every grading run is made once, in `graded_class`;
the tests below read what it left. The unpacking checks need no grading and run in milliseconds.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs.grader.trusted.runner import grade
from labs.instructor.release import generate
from labs.instructor.submissions import Person, SubmissionProblem, find_submissions, read_gradescope_metadata, unpack
from tests.course.fixtures.mutation import REPO_ROOT
from tests.course.fixtures.wrong_mlp import WRONG

EXERCISES = ["1.1", "1.4"]
SECRET = "PANGOLIN_7F3A"  # in the hidden tests' code, inputs and messages: must reach no output file
HIDDEN_TEST = f'''
import pytest
import torch

from tests.helpers import assert_close


@pytest.mark.ex1_1
def test_distance_{SECRET.lower()}(basics):
    X = torch.tensor([[3.0, 4.0]])  # {SECRET}: a 3-4-5 triangle
    assert_close(basics.pairwise_squared_distances(X, torch.zeros(1, 2)), torch.tensor([[25.0]]), "{SECRET} distance")


@pytest.mark.ex1_4
def test_softmax_{SECRET.lower()}(mlp):
    z = torch.tensor([[1000.0, 1000.0]])  # {SECRET}: equal large logits
    assert_close(mlp.softmax(z, dim=1), torch.tensor([[0.5, 0.5]]), "{SECRET} softmax")
'''
SOFTMAX_OVERFLOW = next(w for w in WRONG if w.exercise == "1.4")
MOODLE = "Zoë Müller_4711_assignsubmission_file_"


def _stubs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for path, text in generate()[0].items():  # fresh stubs, whatever the checkout's labs/ holds
        if path.suffix == ".py" and path.stem in EXERCISE_MODULES:
            (folder / path.name).write_text(text)
    return folder


def _solutions(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for module in EXERCISE_MODULES:
        (folder / f"{module}.py").write_text((REPO_ROOT / "solutions" / f"{module}.py").read_text())
    return folder


def _zip(folder: Path, archive: Path, inside: str) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{inside}/{path.relative_to(folder).as_posix()}")
    return archive


def _zip_bomb(archive: Path, megabytes: int = 40) -> Path:
    """A zip of a few KiB holding a valid basics.py and megabytes of zeros."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labs/basics.py", (REPO_ROOT / "solutions" / "basics.py").read_text())
        with zf.open("labs/data.bin", "w", force_zip64=True) as member:
            for _ in range(megabytes):
                member.write(bytes(2**20))
    return archive


def _grade_class(submissions: Path, out: Path, hidden: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "labs", "grade-class", str(submissions), "--out", str(out), "--jobs", "2",
            "--extra-tests", str(hidden), "--exercises", *EXERCISES, *extra]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in command:
                found.append(f"{entry.name}: {command[:200]}")
    return found


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> dict:
    """A class of six, graded with a hidden test: interrupted once, resumed, rerun; and each graded alone."""
    base = tmp_path_factory.mktemp("class")
    submissions = base / "submissions"
    submissions.mkdir()
    singles = base / "single"  # the same submissions, as folders for `grade()`
    _stubs(submissions / "stubs")
    _zip(_solutions(singles / "solutions"), submissions / "solutions.zip", "my lab/handed in/labs")
    SOFTMAX_OVERFLOW.write_submission(submissions / "softmax-overflow")
    moodle = submissions / MOODLE / "Übung 1" / "labs"
    moodle.mkdir(parents=True)  # basics.py only, two folders down
    (moodle / "basics.py").write_text((REPO_ROOT / "solutions" / "basics.py").read_text())
    (submissions / "empty").mkdir()
    _zip_bomb(submissions / "bomb.zip")
    hidden = base / "instructor-only"
    hidden.mkdir()
    (hidden / "test_more.py").write_text(HIDDEN_TEST)
    out = base / "out"
    runs: dict = {"out": out, "submissions": submissions}

    # 1. Interrupted as soon as one real grading is done (the empty folder and the bomb take no time).
    process = subprocess.Popen(_grade_class(submissions, out, hidden), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        done = [p for p in out.glob("students/*/results.json") if json.loads(p.read_text()).get("tests")]
        if done:
            break
        time.sleep(0.5)
    interrupted_while_running = process.poll() is None
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    runs["first"] = (process.returncode, stdout, stderr, interrupted_while_running)
    runs["after_first"] = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("students/*/results.json")}
    runs["left_running"] = _processes_mentioning(str(out))

    # 2. Resumed to the end. 3. Run again: nothing left to grade.
    for name in ("second", "third"):
        started = time.monotonic()
        process = subprocess.run(_grade_class(submissions, out, hidden), cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
        runs[name] = (process.returncode, process.stdout, process.stderr, time.monotonic() - started)
        runs[f"after_{name}"] = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("students/*/results.json")}

    # Each gradable submission graded alone, as `python -m labs grade --submission` would.
    alone = {"stubs": submissions / "stubs", "solutions": singles / "solutions",
             "softmax-overflow": submissions / "softmax-overflow", "4711": moodle}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {key: pool.submit(grade, folder, EXERCISES, 60.0, 900.0, hidden) for key, folder in alone.items()}
        runs["alone"] = {key: future.result() for key, future in futures.items()}
    return runs


def _results(out: Path, key: str) -> dict:
    return json.loads((out / "students" / key / "results.json").read_text(encoding="utf-8"))


def _points_by_exercise(results: dict) -> dict[str, tuple[float, float]]:
    points: dict[str, tuple[float, float]] = {}
    for test in results["tests"]:
        earned, possible = points.get(test["number"], (0.0, 0.0))
        points[test["number"]] = (earned + test["score"], possible + test["max_score"])
    return {k: (round(e, 6), round(p, 6)) for k, (e, p) in points.items()}


def test_an_interrupted_run_keeps_what_it_finished_and_leaves_no_process(graded_class):
    returncode, stdout, stderr, interrupted_while_running = graded_class["first"]
    assert interrupted_while_running, f"the class was graded before it could be interrupted:\n{stdout}\n{stderr}"
    assert returncode == 130, f"an interrupted run should exit 130, got {returncode}:\n{stderr[-3000:]}"
    assert "run the same command again" in stderr
    graded = graded_class["after_first"]
    assert 1 <= len(graded) < 6, f"the interrupted run should have graded some students, not all: {sorted(graded)}"
    for key in graded:
        assert (graded_class["out"] / "students" / key / "feedback.md").is_file(), f"{key} has results but no feedback"
    assert not graded_class["left_running"], f"processes outlived the interrupted run: {graded_class['left_running']}"


def test_rerunning_resumes_and_skips_students_already_graded(graded_class):
    returncode, stdout, stderr, _ = graded_class["second"]
    assert returncode == 0, f"the resumed run failed:\n{stdout}\n{stderr[-3000:]}"
    first, second = graded_class["after_first"], graded_class["after_second"]
    assert len(second) == 6, f"every student should be graded after the resumed run: {sorted(second)}"
    regraded = [key for key in first if second[key] != first[key]]
    assert not regraded, f"the resumed run graded again students graded before: {regraded}"
    assert f"{len(first)} graded before, {6 - len(first)} to grade" in stdout, stdout

    returncode, stdout, stderr, elapsed = graded_class["third"]
    assert returncode == 0 and "6 graded before, 0 to grade" in stdout, stdout + stderr
    assert graded_class["after_third"] == second, "a run with nothing left to grade rewrote results.json files"
    assert elapsed < 60, f"a run with nothing to grade took {elapsed:.0f} s"


def test_each_score_is_what_grading_the_submission_alone_gives(graded_class):
    for key, report in graded_class["alone"].items():
        alone = {r.exercise.id: (round(r.earned, 6), round(r.possible, 6)) for r in report.exercises}
        assert _points_by_exercise(_results(graded_class["out"], key)) == alone, f"{key}: grade-class and grade() disagree"
    points = _points_by_exercise(_results(graded_class["out"], "solutions"))
    assert all(e == p > 0 for e, p in points.values()), f"the solutions (a zip with nested folders) lost points: {points}"
    assert _results(graded_class["out"], "stubs")["score"] == 0
    assert _points_by_exercise(_results(graded_class["out"], "4711"))["1.4"][0] == 0, "mlp.py was missing, yet 1.4 earned points"


def test_the_hidden_tests_count_in_the_scores(graded_class):
    for key, passed in (("solutions", True), ("stubs", False), ("softmax-overflow", False)):
        hidden = [t for t in _results(graded_class["out"], key)["tests"] if t.get("visibility") == "after_published"]
        assert sorted(t["number"] for t in hidden) == EXERCISES, f"{key}: expected an entry of hidden tests per exercise, found {hidden}"
        if passed:
            assert all(t["status"] == "passed" for t in hidden), f"{key} should pass the hidden tests"
    overflow = [t for t in _results(graded_class["out"], "softmax-overflow")["tests"] if t["number"] == "1.4" and t["name"].endswith("(hidden tests)")]
    assert overflow[0]["status"] == "failed" and "worth 1 point" in overflow[0]["output"]


def test_nothing_written_shows_the_hidden_tests(graded_class):
    feedback = (graded_class["out"] / "students" / "softmax-overflow" / "feedback.md").read_text(encoding="utf-8")
    assert "Hidden tests: 1 failed, worth 1 point" in feedback, feedback
    for path in graded_class["out"].rglob("*"):
        if path.is_file():
            assert SECRET.lower().encode() not in path.read_bytes().lower(), f"{path} shows the hidden tests' code or values"


def test_problem_submissions_get_zero_a_reason_and_a_line_in_the_report(graded_class):
    out = graded_class["out"]
    report = (out / "report.md").read_text(encoding="utf-8")
    for key, reason in (("bomb", "more than the 20.0 MiB allowed"), ("empty", "the submission is empty")):
        results = _results(out, key)
        assert results["score"] == 0 and reason in results["output"], results
        assert reason in (out / "students" / key / "feedback.md").read_text(encoding="utf-8")
        line = next((line for line in report.splitlines() if f"({key})" in line), "")
        assert "could not be graded" in line and reason in line, f"report.md has no clear line for {key}:\n{report}"
    assert "graded without mlp.py" in report, "the Moodle submission without mlp.py should be named in the report"
    assert not list((out / "work").glob("bomb/files/**/data.bin")), "the zip bomb was unpacked"


def test_grades_csv_has_a_row_per_student_that_a_spreadsheet_reads(graded_class):
    out = graded_class["out"]
    with open(out / "grades.csv", newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 6, f"grades.csv should have one row per student: {rows}"
    header = list(rows[0])
    assert header[:2] == ["Student", "ID"] and header[-1].startswith("Total"), header
    columns = [h for h in header if h.startswith("Exercise ")]
    assert [c.split(" (")[0] for c in columns] == ["Exercise 1.1", "Exercise 1.4"] and all(c.endswith(" pts)") for c in columns), header
    by_id = {row["ID"]: row for row in rows}
    assert by_id["4711"]["Student"] == "Zoë Müller", "the Moodle folder should give the student's name and ID"
    for key, row in by_id.items():
        assert float(row[header[-1]]) == pytest.approx(_results(out, key)["score"], abs=0.01), f"{key}: total differs from results.json"


def test_the_report_shows_distributions_and_the_common_first_failures(graded_class):
    out = graded_class["out"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Per exercise" in report and "| 1.4 Softmax and log-softmax |" in report
    section = report.split("## Most common first failures", 1)[1]
    assert "1 student(s): exercise 1.4" in section and "softmax-overflow" in section, section
    for plot in ("totals", "exercises", "failures"):
        path = out / "plots" / f"{plot}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        assert f"plots/{plot}.png" in report
    feedback = (out / "students" / "softmax-overflow" / "feedback.md").read_text(encoding="utf-8")
    assert "### Exercise 1.4" in feedback and "First failure, in `test_" in feedback and "1.1 Pairwise" in feedback


def test_other_settings_need_force(graded_class):
    process = subprocess.run([sys.executable, "-m", "labs", "grade-class", str(graded_class["submissions"]), "--out",
                              str(graded_class["out"]), "--exercises", "1.1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2 and "--force" in process.stderr and "exercises" in process.stderr, process.stderr


# ---------------------------------------------------------------- finding and unpacking, no grading


def _find(root: Path, work: Path) -> dict[str, object]:
    found, _ = find_submissions(root, work)
    return {s.key: s for s in found}


def test_moodle_canvas_and_plain_names_give_the_student_ids(tmp_path):
    root = tmp_path / "in"
    (root / "José Pérez_12345_assignsubmission_file_").mkdir(parents=True)
    (root / "José Pérez_12345_assignsubmission_onlinetext_").mkdir()
    (root / "Ann Lee_99_assignsubmission_file_basics.py").write_text("x = 1\n")
    (root / "doejane_777_888_basics.py").write_text("x = 1\n")
    (root / "doejane_LATE_777_889_mlp-1.py").write_text("x = 1\n")
    (root / "bob smith.zip").write_bytes(b"")
    (root / "notes.txt").write_text("not a submission")
    found = _find(root, tmp_path / "work")
    assert set(found) == {"12345", "99", "777", "bob smith"}, sorted(found)
    assert found["12345"].people == [Person("12345", "José Pérez")] and len(found["12345"].sources) == 2
    assert sorted(name for _, name in found["777"].sources) == ["basics.py", "mlp.py"], "Canvas's -1 suffix should go"


def test_gradescope_export_metadata_names_every_member_of_a_group(tmp_path):
    export = tmp_path / "assignment_1_export"
    for name in ("submission_1", "submission_2"):
        (export / name).mkdir(parents=True)
    (export / "submission_metadata.yml").write_text(
        "---\nsubmission_1:\n  :submitters:\n  - :name: Ada Lovelace\n    :sid: '1815'\n    :email: ada@example.org\n"
        "  - :name: Charles Babbage\n    :sid: '1791'\n  :created_at: 2024-01-01 10:00:00 -07:00\n  :results:\n"
        "    :tests:\n    - :name: not a student\nsubmission_2:\n  :submitters:\n  - :name: \"Émile Noël\"\n"
        "    :email: emile@example.org\n")
    people = read_gradescope_metadata(export / "submission_metadata.yml")
    assert [p.name for p in people["submission_1"]] == ["Ada Lovelace", "Charles Babbage"], people
    assert people["submission_2"] == [Person("emile@example.org", "Émile Noël", "", "emile@example.org")]
    found = _find(tmp_path, tmp_path / "work")  # the export's own folder, one level down, is found
    assert set(found) == {"1815", "emile@example.org"} and len(found["1815"].people) == 2


def test_unpacking_skips_zip_slip_and_links_and_finds_modules_at_any_depth(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    with zipfile.ZipFile(root / "eve.zip", "w") as zf:
        zf.writestr("../../escaped.py", "x = 1\n")
        zf.writestr("/absolute.py", "x = 1\n")
        link = zipfile.ZipInfo("a/b/labs/mlp.py")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("a/b/labs/basics.py", "x = 1\n")
        zf.writestr("a/basics.py", "x = 2\n")
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("lab1/labs/conv.py", "x = 3\n")
        zf.writestr("lab1/labs/models.py", "x = 4\n")
    moodle = root / "Ann Lee_99_assignsubmission_file_"
    moodle.mkdir()
    (moodle / "lab1.zip").write_bytes(inner.read_bytes())
    found = _find(root, tmp_path / "work")
    unpacked = unpack(found["eve"], tmp_path / "work" / "eve")
    assert not (tmp_path / "escaped.py").exists() and not list(tmp_path.rglob("escaped.py"))
    assert any("'..'" in note for note in unpacked.notes) and any("symbolic link" in note for note in unpacked.notes)
    assert sorted(p.name for p in unpacked.folder.iterdir()) == ["basics.py"], "a link was graded as mlp.py"
    assert unpacked.found_in in ("a/b/labs/", "a/"), unpacked.found_in
    nested = unpack(found["99"], tmp_path / "work" / "99")
    assert sorted(p.name for p in nested.folder.iterdir()) == ["conv.py", "models.py"] and nested.missing == ["basics.py", "mlp.py"]
    assert not (moodle / "lab1").exists(), "a zip inside the input was unpacked beside it instead of in the work folder"


def test_unpacking_refuses_a_zip_bomb_a_broken_zip_and_an_empty_folder(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    _zip_bomb(root / "bomb.zip", megabytes=25)
    (root / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "empty").mkdir()
    found = _find(root, tmp_path / "work")
    for key, words in (("bomb", "more than the 20.0 MiB allowed"), ("broken", "could not be unpacked"), ("empty", "is empty")):
        with pytest.raises(SubmissionProblem, match=words):
            unpack(found[key], tmp_path / "work" / key)
    assert unpack(found["bomb"], tmp_path / "work" / "bomb2", max_bytes=30 * 2**20).missing == ["mlp.py", "conv.py", "models.py"]


def test_help_lists_the_instructor_commands():
    process = subprocess.run([sys.executable, "-m", "labs", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ})
    assert "grade-class" in process.stdout and "gradescope-package" in process.stdout
