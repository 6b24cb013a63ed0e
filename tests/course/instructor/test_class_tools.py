"""The instructor's class tools around grade-class: regrading one student (--only), points given
by hand (--overrides), a class split over machines (--shard K/N), the students' hand-out, and
text from a submission made inert wherever it lands (feedback.md, report.md, grades.csv, the
terminal).

Grading is the slow part, so one small class (three submissions, exercises 1.1 and 1.2) is
graded once on "one machine" and once in two shards, in `graded`; the tests read what the runs
left. Everything else (parsing, escaping, the README's markers) runs in milliseconds.
"""

from __future__ import annotations

import csv
import json
import os
import re
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs.grader.catalog import load_catalog
from labs.grader.trusted.report import ExerciseResult, GradeReport
from labs.grader.trusted.report import TestResult as Outcome  # as TestResult, pytest would try to collect it
from labs.instructor.class_grading import SETTINGS_FILE, _one_line, class_settings, grade_class, parse_shard, share_of_class
from labs.instructor.class_report import (Override, OverrideError, StudentGrade, _cell, _fence, code_span, feedback_markdown,
                                          match_overrides, md_text, read_overrides, totals_figure, write_grades_csv,
                                          write_report)
from labs.grader.text import printable
from labs.instructor.handout import GENERATED, HandoutError, build_handout, students_readme
from labs.instructor.release import generate
from tests.course.instructor.test_class_grading import _solutions, _stubs
from labs.instructor.submissions import (Person, Submission, SubmissionProblem, find_submissions, read_gradescope_metadata,
                                         read_gradescope_submissions)
from tests.course.fixtures.mutation import REPO_ROOT

EXERCISES = ["1.1", "1.2"]
HTML_NAME = "<img src=x onerror=alert(1)>"  # a folder name: the student's label in the report
FORMULA_NAME = "Eve;=1+2;@SUM(40+2)"  # a Moodle full name: a gradebook cell
MOODLE = f"{FORMULA_NAME}_9_assignsubmission_file_"
# What 1.1 of Eve's basics.py raises: it clears the terminal, rewinds the line, tries to close the
# fence of its feedback block with tildes and with backticks, and brings HTML.
EVIL_MESSAGE = "\x1b[2J\x1b[31mwiped\x1b[0m\r\x08~~~~~~\n```\n<img src=y onerror=alert(2)>\n~~~\n# heading"
ESCAPE_FILE = "\x1b[2Jnotes.txt"  # not a submission: its name is printed as a note


# ---------------------------------------------------------------- helpers




def _evil(folder: Path) -> Path:
    """The solutions, but 1.1 raises EVIL_MESSAGE."""
    _solutions(folder)
    basics = folder / "basics.py"
    text = basics.read_text()
    anchor = "# BEGIN SOLUTION 1.1"
    assert text.count(anchor) == 1, "the 1.1 block moved: update this fixture"
    indent = re.search(rf"^(\s*){re.escape(anchor)}", text, re.MULTILINE)[1]
    basics.write_text(text.replace(anchor, f"raise ValueError({EVIL_MESSAGE!r})\n{indent}{anchor}", 1))
    return folder


def _run(**kwargs) -> subprocess.CompletedProcess:
    """run_grade_class(**kwargs) in a process of its own (it becomes a subreaper), as the CLI calls it."""
    return subprocess.run(_command(**kwargs), cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)


def _command(**kwargs) -> list[str]:
    args = {"jobs": 2, "exercises": EXERCISES, "timeout": 60.0, "time_budget": 900.0, "extra_tests": None,
            "force": False, "max_unpacked_mb": 20.0, **{k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}}
    code = ("import json, sys; from labs.instructor.class_grading import run_grade_class; "
            "raise SystemExit(run_grade_class(**json.loads(sys.argv[1])))")
    return [sys.executable, "-c", code, json.dumps(args)]


def _snapshot(out: Path) -> dict[str, tuple[int, bytes]]:
    """{student: (mtime, bytes) of results.json}."""
    return {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("students/*/results.json")}


def _csv(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="", encoding="utf-8-sig") as file:
        return {row["ID"]: row for row in csv.DictReader(file)}


def _total(row: dict[str, str]) -> str:
    return next(value for name, value in row.items() if name.startswith("Total"))


def _points(out: Path, key: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for test in json.loads((out / "students" / key / "results.json").read_text())["tests"]:
        found[test["number"]] = round(found.get(test["number"], 0.0) + test["score"], 6)
    return found


def _to_grade(stdout: str) -> int:
    match = re.search(r"(\d+) to grade", stdout)
    assert match, stdout
    return int(match[1])


def _outside_code(markdown: str) -> str:
    """The markdown a viewer renders as markdown: fenced blocks (CommonMark's closing rule) and code spans removed."""
    kept, fence = [], None
    for line in markdown.splitlines():
        opening = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if fence is None and opening:
            fence = opening[1]
        elif fence is not None:
            if re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
                fence = None
        else:
            kept.append(line)
    assert fence is None, "a fenced block is never closed: everything after it reads as code"
    text = "\n".join(kept)
    return re.sub(r"(?<!\\)(`+)(?!`).*?(?<!`)\1(?!`)", "", text)


def _assert_inert(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), f"{path.name} holds a control character"
    outside = _outside_code(text)
    assert not re.search(r"<[A-Za-z/!?]", outside), f"{path.name} holds raw HTML outside code:\n{outside}"
    assert not re.search(r"(?<!\\)\]\(", outside.replace("](plots/", "")), f"{path.name} holds a link:\n{outside}"


# ---------------------------------------------------------------- one class, graded on one machine and in shards


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("tools")
    subs = base / "submissions"
    _stubs(subs / "stubs")
    with zipfile.ZipFile(subs / f"{HTML_NAME}.zip", "w") as zf:  # the solutions, and a member that climbs out
        for path in sorted(_solutions(base / "html").iterdir()):
            zf.write(path, f"labs/{path.name}")
        zf.writestr(f"../{HTML_NAME.replace('1', '3')}", "x = 1\n")
    _evil(subs / MOODLE)
    (subs / ESCAPE_FILE).write_text("not a submission")
    runs: dict = {"base": base, "subs": subs, "single": base / "single", "sharded": base / "sharded"}

    runs["one"] = _run(submissions=subs, out=runs["single"])
    runs["after_one"] = _snapshot(runs["single"])

    shards = [subprocess.Popen(_command(submissions=subs, out=runs["sharded"], jobs=1, shard=f"{k}/2"), cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    runs["shards"] = [(p.wait(timeout=1800), *p.communicate()) for p in shards]
    runs["after_shards"] = _snapshot(runs["sharded"])
    runs["gradebook_after_shards"] = (runs["sharded"] / "grades.csv").exists() or (runs["sharded"] / "report.md").exists()
    runs["assemble"] = _run(submissions=subs, out=runs["sharded"])
    runs["after_assemble"] = _snapshot(runs["sharded"])

    runs["only"] = _run(submissions=subs, out=runs["single"], only=["9"])  # Eve, by her Moodle ID
    runs["after_only"] = _snapshot(runs["single"])

    overrides = base / "overrides.csv"
    overrides.write_text("student,exercise,points,reason\n"
                         "stubs,1.1,2,\"Handed in by e-mail: graded by hand, 2 of 3\"\n"
                         "9,total,4,\"Late: <b>one</b> point off *as announced*\"\n", encoding="utf-8")
    runs["overridden"] = _run(submissions=subs, out=runs["single"], overrides=overrides)
    runs["after_overridden"] = _snapshot(runs["single"])
    runs["feedback_overridden"] = {key: (runs["single"] / "students" / key / "feedback.md").read_text(encoding="utf-8")
                                   for key in ("stubs", "9")}
    runs["csv_overridden"] = _csv(runs["single"])
    runs["report_overridden"] = (runs["single"] / "report.md").read_text(encoding="utf-8")
    runs["stored_overridden"] = json.loads((runs["single"] / "students" / "9" / "adjustments.json").read_text())
    runs["kept"] = _run(submissions=subs, out=runs["single"])
    runs["csv_kept"] = _csv(runs["single"])
    empty = base / "none.csv"
    empty.write_text("student,exercise,points,reason\n")
    runs["dropped"] = _run(submissions=subs, out=runs["single"], overrides=empty)
    runs["csv_dropped"] = _csv(runs["single"])
    return runs


def _ok(process: subprocess.CompletedProcess) -> str:
    assert process.returncode == 0, f"grade-class failed ({process.returncode}):\n{process.stdout}\n{process.stderr[-3000:]}"
    return process.stdout


@pytest.mark.slow
def test_only_regrades_exactly_the_students_it_names(graded):
    stdout = _ok(graded["only"])
    assert "1 to grade (--only)" in stdout, stdout
    before, after = graded["after_one"], graded["after_only"]
    assert set(before) == set(after) == {"stubs", "9", "_img src=x onerror=alert(1)_"}, sorted(after)
    assert after["9"][0] != before["9"][0], "--only 9 did not regrade Eve (results.json unchanged)"
    untouched = {key: after[key] == before[key] for key in before if key != "9"}
    assert all(untouched.values()), f"--only 9 rewrote other students' results.json: {untouched}"
    assert _points(graded["single"], "9") == {"1.1": 0.0, "1.2": 2.0}, "Eve's regrade scored differently"


@pytest.mark.slow
def test_overrides_apply_on_a_rerun_that_grades_nobody_and_feedback_gives_the_reason(graded):
    stdout = _ok(graded["overridden"])
    assert "3 graded before, 0 to grade" in stdout, stdout
    assert graded["after_overridden"] == graded["after_only"], "applying overrides rewrote a results.json"
    rows = graded["csv_overridden"]
    assert rows["stubs"]["Exercise 1.1 (3 pts)"] == "2" and _total(rows["stubs"]) == "2", rows["stubs"]
    assert _total(rows["9"]) == "4" and rows["9"]["Exercise 1.2 (2 pts)"] == "2", rows["9"]
    stubs = graded["feedback_overridden"]["stubs"]
    assert "Handed in by e-mail: graded by hand, 2 of 3" in stubs and "2 point(s) instead of 0 (graded)" in stubs, stubs
    assert "**Total: 2 / 5 points (40%)** (graded 0" in stubs, stubs
    eve = graded["feedback_overridden"]["9"]
    assert "Total: 4 point(s) instead of 2 (graded)" in eve and "&lt;b&gt;one&lt;/b&gt;" in eve and "\\*as announced\\*" in eve, eve
    report = graded["report_overridden"]
    assert "## Points given by hand" in report and "| stubs | 1.1 | 0 | 2 |" in report, report
    stored = graded["stored_overridden"]
    assert [o["exercise"] for o in stored["overrides"]] == ["total"], stored


@pytest.mark.slow
def test_stored_overrides_outlive_a_run_without_the_file_and_an_empty_file_drops_them(graded):
    _ok(graded["kept"])
    assert graded["csv_kept"] == graded["csv_overridden"], "a rerun without --overrides lost the points given by hand"
    _ok(graded["dropped"])
    assert _total(graded["csv_dropped"]["stubs"]) == "0" and _total(graded["csv_dropped"]["9"]) == "2", graded["csv_dropped"]
    assert not list(graded["single"].glob("students/*/adjustments.json")), "an empty overrides file left adjustments behind"
    feedback = (graded["single"] / "students" / "stubs" / "feedback.md").read_text(encoding="utf-8")
    assert "by hand" not in feedback, feedback
    assert _snapshot(graded["single"]) == graded["after_only"], "dropping the overrides rewrote a results.json"


@pytest.mark.slow
def test_shards_in_one_folder_score_as_one_machine_and_grade_nobody_twice(graded):
    counts = []
    for returncode, stdout, stderr in graded["shards"]:
        assert returncode == 0, f"a shard failed:\n{stdout}\n{stderr[-3000:]}"
        assert "run the same command without --shard" in stdout, stdout
        counts.append(_to_grade(stdout))
    assert sorted(counts) == [1, 2], f"two shards of three students should grade 2 and 1: {counts}"
    assert not graded["gradebook_after_shards"], "a shard wrote grades.csv or report.md: only the assembling run may"
    assert set(graded["after_shards"]) == set(graded["after_one"]), "the shards together did not grade the whole class"
    stdout = _ok(graded["assemble"])
    assert "3 graded before, 0 to grade" in stdout, stdout
    assert graded["after_assemble"] == graded["after_shards"], "the assembling run graded a student again"
    single, sharded = graded["single"], graded["sharded"]
    for key in graded["after_one"]:
        assert _points(sharded, key) == json.loads(json.dumps(_points(single, key))), f"{key}: shards and one machine disagree"
    assert _csv(sharded) == graded["csv_dropped"], "the gradebooks of the shards and of one machine differ"
    assert json.loads((sharded / "grade-class.json").read_text())["settings"]["exercises"] == EXERCISES
    assert not list(sharded.glob(".*.tmp")) and (sharded / "report.md").is_file()


@pytest.mark.slow
def test_text_from_submissions_is_inert_in_feedback_report_csv_and_terminal(graded):
    out = graded["sharded"]
    for path in (out / "report.md", *out.glob("students/*/feedback.md")):
        _assert_inert(path)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"**{md_text(HTML_NAME + '.zip')}**" in report and md_text(f"'../{HTML_NAME.replace('1', '3')}'") in report, report
    assert "wiped" in report, "the common failure's example should show Eve's message"
    eve = (out / "students" / "9" / "feedback.md").read_text(encoding="utf-8")
    assert "# Feedback: Eve;=1\\+2;@SUM\\(40\\+2\\) \\(9\\)" in eve, eve
    assert "wiped" in eve and "\x1b" not in eve and "\r" not in eve, "the message should be kept, without its escapes"
    with open(out / "grades.csv", newline="", encoding="utf-8-sig") as file:
        raw = file.read()
    assert "Eve;'=1+2;'@SUM(40+2)" in raw, raw
    for cells in csv.reader(raw.splitlines()):
        for cell in cells:
            for part in re.split(r"[,;|]", cell):
                assert not re.match(r"\s*[=+@]", part), f"grades.csv: {cell!r} can start a formula"
    for process in (graded["one"], graded["assemble"], *[subprocess.CompletedProcess([], r, o, e) for r, o, e in graded["shards"]]):
        printed = process.stdout + process.stderr
        assert "\x1b" not in printed and "\x08" not in printed, f"an escape sequence reached the terminal:\n{printed!r}"
    assert "note: ignored notes.txt: neither" in graded["one"].stdout, graded["one"].stdout


# ---------------------------------------------------------------- points given by hand, no grading


def _write(tmp_path: Path, text: str, name: str = "overrides.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_overrides_file_is_read_with_ids_total_and_a_semicolon_export(tmp_path):
    rows = read_overrides(_write(tmp_path, "\ufeffstudent,exercise,points,reason\n# a comment\n\nalice,1.4,3,\"re-marked, by hand\"\nbob,TOTAL,10.5,bonus\n"))
    assert rows == [Override("alice", "1.4", 3.0, "re-marked, by hand", 4), Override("bob", "total", 10.5, "bonus", 5)]
    excel = read_overrides(_write(tmp_path, "Student;Exercise;Points;Reason\r\nalice;1.4;2,5;par e-mail\r\n", "excel.csv"))
    assert excel == [Override("alice", "1.4", 2.5, "par e-mail", 2)]


@pytest.mark.parametrize("body, words", [
    ("name,exercise,points,reason\n", "line 1: the header should be"),
    ("student,exercise,points,reason\nalice,1.4,three,typo\n", "line 2: points should be a number, found 'three'"),
    ("student,exercise,points,reason\nalice,1.4,-1,penalty\n", "line 2: points should be 0 or more"),
    ("student,exercise,points,reason\n\nalice,1.4,3,\n", "line 3: no reason"),
    ("student,exercise,points,reason\nalice,softmax,3,x\n", "line 2: exercise should be an exercise id such as 1.4, or `total`"),
    ("student,exercise,points,reason\nalice,1.4,3,x\nalice,1.4,2,y\n", "line 3: alice 1.4 was already given on line 2"),
    ("student,exercise,points,reason\nalice,1.4,3,a,b\n", "line 2: 5 cell(s), expected 4"),
    ("", "is empty"),
])
def test_a_bad_overrides_row_is_refused_naming_its_line(tmp_path, body, words):
    with pytest.raises(OverrideError, match=re.escape(words)):
        read_overrides(_write(tmp_path, body))


def _grade(key: str, people: list[Person] | None = None, results: dict | None = None) -> StudentGrade:
    return StudentGrade(key, key, people or [Person(key, key)], results)


def _results(scores: dict[str, tuple[int, int]]) -> dict:
    """results.json as the grader writes it, for exercises with `possible` one-point tests of which `earned` pass."""
    catalog = {exercise.id: exercise for exercise in load_catalog()}
    exercises = [ExerciseResult(catalog[ex], [Outcome(f"tests/test_x.py::test_{i}", f"test_x.py::test_{i}", ex, 1.0,
                                                      "passed" if i < earned else "failed",
                                                      "" if i < earned else "AssertionError: differs")
                                              for i in range(possible)])
                 for ex, (earned, possible) in scores.items()]
    return GradeReport("a submission", exercises).gradescope()


def test_overrides_name_a_student_of_the_class_and_an_exercise_it_grades(tmp_path):
    exercises = [e for e in load_catalog() if e.id in EXERCISES]
    grades = [_grade("alice", results=_results({"1.1": (1, 3), "1.2": (2, 2)})),
              _grade("group", [Person("111", "Ann"), Person("222", "Ben")], _results({"1.1": (3, 3), "1.2": (0, 2)}))]
    matched = match_overrides([Override("222", "1.2", 1, "x", 2), Override("alice", "total", 4, "y", 3)], grades, exercises)
    assert [o.exercise for o in matched["group"]] == ["1.2"] and matched["alice"][0].points == 4
    for row, words in ((Override("carol", "1.1", 1, "x", 7), "line 7: no student 'carol' in this class"),
                       (Override("alice", "1.4", 1, "x", 8), "line 8: exercise 1.4 is not graded in this folder"),
                       (Override("alice", "1.1", 4, "x", 9), "line 9: 4 points, but exercise 1.1 is worth 3")):
        with pytest.raises(OverrideError, match=re.escape(words)):
            match_overrides([row], grades, exercises, "overrides.csv")


def test_a_bad_overrides_file_stops_the_run_before_anyone_is_graded(tmp_path):
    subs = tmp_path / "subs"
    _stubs(subs / "alice")
    bad = _write(tmp_path, "student,exercise,points,reason\nalice,1.1,1,ok\nzed,1.1,1,who?\n")
    process = _run(submissions=subs, out=tmp_path / "out", overrides=bad)
    assert process.returncode == 2 and "line 3: no student 'zed'" in process.stderr, process.stderr
    assert not list((tmp_path / "out").glob("students/*/results.json")), "a student was graded before the file was checked"


@pytest.mark.parametrize("kwargs, words", [
    ({"only": ["a"], "force": True}, "--only regrades the students it names, --force regrades everyone"),
    ({"shard": (1, 2), "only": ["a"]}, "give --only to the run without --shard"),
    ({"shard": (3, 2)}, "expected K/N with 1 <= K <= N"),
])
def test_flags_that_cannot_go_together_are_refused_before_anything_is_written(tmp_path, capsys, kwargs, words):
    (tmp_path / "subs").mkdir()
    assert grade_class(tmp_path / "subs", tmp_path / "out", exercises=EXERCISES, progress=False, **kwargs) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_only_names_no_student_that_is_not_in_the_class(tmp_path, capsys):
    _stubs(tmp_path / "subs" / "alice")
    assert grade_class(tmp_path / "subs", tmp_path / "out", exercises=EXERCISES, progress=False, only=["bob"]) == 2
    assert "--only: no student 'bob'" in capsys.readouterr().err


# ---------------------------------------------------------------- shards, no grading


def test_shards_split_the_class_into_disjoint_shares_that_cover_it():
    found = [Submission(f"s{i:02d}", f"s{i:02d}", []) for i in range(11)]
    for n in (1, 2, 3, 4, 11, 12):
        shares = [[s.key for s in share_of_class(found, (k, n))] for k in range(1, n + 1)]
        assert sorted(key for share in shares for key in share) == [s.key for s in found], f"N={n}: not a partition"
        assert max(map(len, shares)) - min(map(len, shares)) <= 1, f"N={n}: uneven shares {list(map(len, shares))}"
    assert share_of_class(found, None) == found


@pytest.mark.parametrize("text", ["0/4", "5/4", "1-4", "", "a/b"])
def test_a_shard_is_k_of_n_counted_from_one(text):
    with pytest.raises(ValueError, match="expected K/N with 1 <= K <= N"):
        parse_shard(text)
    assert parse_shard(" 3 / 8 ") == (3, 8)


# ---------------------------------------------------------------- text from a submission, no grading


def test_markdown_and_html_in_a_name_are_shown_never_rendered():
    assert md_text("../<img src=x onerror=alert(1)>") == "../&lt;img src=x onerror=alert\\(1\\)&gt;"
    assert md_text("[click](http://x) *b* _i_ `c` ~~s~~ a|b & c") == \
        "\\[click\\]\\(http://x\\) \\*b\\* \\_i\\_ \\`c\\` \\~\\~s\\~\\~ a\\|b &amp; c"
    assert md_text("# Title\nsecond line") == "\\# Title second line"
    assert md_text("- item") == "\\- item" and md_text("1. first") == "1\\. first"
    assert md_text("Zoë Müller, softmax-overflow") == "Zoë Müller, softmax-overflow", "plain names stay as they are"
    assert code_span("a`b") == "``a`b``" and code_span("`x`") == "`` `x` ``" and code_span("a|b") == "`a\\|b`"


def test_no_line_of_a_message_closes_its_fence():
    message = "~~~\n~~~~~~ \n```\n<script>alert(1)</script>\n\x1b[2Jcleared"
    block = _fence(message)
    assert _outside_code(block + "\nafter") == "after", block
    assert "\x1b" not in block and "cleared" in block


def test_control_characters_never_reach_the_terminal_or_the_markdown():
    assert printable("\x1b[2J\x1b[1;31mred\x1b[0m\x1b]0;title\x07 ok\rback\x08\x07\x9b2J") == "red ok\nback"
    assert printable("a\r\nb\tc", newlines=False) == "a b c"
    assert printable("\u202eevil\u202c name") == "evil name", "a bidirectional override can disguise a name"
    assert printable("ok\n\u3164\n\u2800\u115f\u1160\uffa0\nZo\u00eb \ud55c") == "ok\n\n\nZo\u00eb \ud55c", \
        "characters that draw nothing can pad a message into lines that look like the grader's; real letters stay"
    grade = StudentGrade("k\x1b[2J", "k", [], None, [], problem="\x1b[2Jbad\rzip")
    assert _one_line(grade) == "k: could not be graded: bad zip"


@pytest.mark.parametrize("name, cell", [
    ("Eve;=1+2;@SUM(40+2)", "Eve;'=1+2;'@SUM(40+2)"),
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1", "'+1"), ("@SUM(1)", "'@SUM(1)"), ("-2+3", "'-2+3"), ("Ann, =1", "Ann,' =1"),
    ("a|@x", "a|'@x"), ("\uff1d1+1", "'\uff1d1+1"), ("x\t=1\r\n=2", "x =1 =2"), ("O'Brien-Smith", "O'Brien-Smith"),
])
def test_a_gradebook_cell_cannot_start_a_formula_under_any_separator(name, cell):
    assert _cell(name) == cell


def test_the_report_the_feedback_and_the_gradebook_of_hostile_names_are_inert(tmp_path):
    exercises = [e for e in load_catalog() if e.id in EXERCISES]
    results = _results({"1.1": (1, 3), "1.2": (2, 2)})
    results["tests"][0]["output"] = results["tests"][0]["extra_data"]["first_failure"]["message"] = EVIL_MESSAGE  # as if unsanitised
    hostile = StudentGrade("_img_", f"../{HTML_NAME}", [Person("[x](javascript:alert(1))", f"{FORMULA_NAME} **bold**\n# h")],
                           results, notes=[f"bob.zip: skipped 1 member(s) whose path leaves the archive's folder: '../{HTML_NAME}'"],
                           graded_at="today")
    broken = StudentGrade("zip", f"{HTML_NAME}.zip", [Person("zip", "zip")], {"score": 0, "tests": []},
                          problem=f"{HTML_NAME}.zip could not be unpacked (\x1b[2J`~~~)")
    feedback = tmp_path / "feedback.md"
    feedback.write_text(feedback_markdown(hostile, exercises, "today"), encoding="utf-8")
    _assert_inert(feedback)
    assert "wiped" in feedback.read_text() and "\\[x\\]\\(javascript:alert\\(1\\)\\)" in feedback.read_text()
    (tmp_path / "broken.md").write_text(feedback_markdown(broken, exercises, "today"), encoding="utf-8")
    _assert_inert(tmp_path / "broken.md")
    write_report(tmp_path, [hostile, broken], exercises, ["header"])
    _assert_inert(tmp_path / "report.md")
    report = (tmp_path / "report.md").read_text()
    assert f"**{md_text('../' + HTML_NAME)}**" in report, report
    write_grades_csv(tmp_path / "grades.csv", [hostile, broken], exercises)
    with open(tmp_path / "grades.csv", newline="", encoding="utf-8-sig") as file:
        rows = list(csv.reader(file))
    assert rows[1][0] == "Eve;'=1+2;'@SUM(40+2) **bold** # h" and len(rows) == 3, rows


@pytest.mark.parametrize("totals, could_not_grade, left_out, title", [
    ([0, 3, 5, 5], 1, 0, "Total scores of 4 submissions (1 could not be graded and counts 0)"),
    ([2.5], 0, 2, "Total scores of 1 submission (2 without results, left out)"),
    ([float(n % 114) for n in range(300)], 0, 0, "Total scores of 300 submissions"),
])
def test_the_totals_plot_counts_students_in_whole_numbers_under_a_true_title(totals, could_not_grade, left_out, title):
    ax = totals_figure(totals, 113, could_not_grade, left_out).axes[0]
    assert ax.get_title() == title
    ticks = [tick for tick in ax.get_yticks() if ax.get_ylim()[0] <= tick <= ax.get_ylim()[1]]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), f"students on a fractional axis: {ticks}"


# ---------------------------------------------------------------- Gradescope's metadata, Canvas's late flag


def test_gradescope_metadata_is_read_as_yaml_with_ruby_tags_times_and_ids_kept_as_text(tmp_path):
    path = tmp_path / "submission_metadata.yml"
    path.write_text(
        "---\nsubmission_1:\n  :submitters:\n  - :name: Ada Lovelace\n    :sid: '1815'\n    :email: ada@example.org\n"
        "  - :name: Charles Babbage\n    :sid: 0123\n  :created_at: 2024-01-01 10:00:00.123456789 -07:00\n"
        "  :score: !ruby/object:BigDecimal 18:0.1e2\n  :results: !ruby/hash:ActiveSupport::HashWithIndifferentAccess\n"
        "    :tests:\n    - :name: not a student\n  :assignment:\n    :due_date: 2024-01-01 09:00:00 -07:00\n"
        "    :late_due_date: '2024-01-03T09:00:00-07:00'\nsubmission_2:\n  :submitters:\n  - :name: \"Émile Noël\"\n"
        "    :email: emile@example.org\n  :status: :processed\n", encoding="utf-8")
    entries = read_gradescope_submissions(path)
    first = entries["submission_1"]
    assert [p.id for p in first.people] == ["1815", "0123"], "an ID with a leading zero must stay text, not octal 83"
    assert first.created_at.isoformat() == "2024-01-01T10:00:00.123456-07:00"
    assert first.due_date.isoformat() == "2024-01-01T09:00:00-07:00" and first.late_due_date.isoformat() == "2024-01-03T09:00:00-07:00"
    assert entries["submission_2"].created_at is None
    assert read_gradescope_metadata(path)["submission_2"] == [Person("emile@example.org", "Émile Noël", "", "emile@example.org")]
    (tmp_path / "submission_1").mkdir()
    found, _ = find_submissions(tmp_path, tmp_path / "work")
    assert found[0].submitted_at == first.created_at and found[0].due_at == first.due_date
    path.write_text("submission_1:\n  :submitters: [\n")
    with pytest.raises(SubmissionProblem, match="is not the YAML that Gradescope exports"):
        read_gradescope_submissions(path)


def test_canvas_keeps_the_late_flag_of_its_file_names(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "doejane_LATE_777_889_basics.py").write_text("x = 1\n")
    (tmp_path / "in" / "smithbob_778_890_basics.py").write_text("x = 1\n")
    found = {s.key: s for s in find_submissions(tmp_path / "in", tmp_path / "work")[0]}
    assert found["777"].marked_late and not found["778"].marked_late


# ---------------------------------------------------------------- the hand-out


def test_the_students_readme_loses_the_instructors_blocks_and_sections():
    readme = ("# Course\n\nIntro.\n\n<!-- instructors -->\nsecret block\n<!-- test-command -->\n```bash\npytest --impl solutions\n```\n"
              "<!-- /test-command -->\n<!-- /instructors -->\n\n## For students\n\nGrade yourself.\n\n"
              "```\n# not a heading: instructors\n```\n\n## For instructors\n\n- release\n\n### Details\n\nmore\n\n## Data\n\nData.\n")
    text = students_readme(readme)
    assert text.startswith(GENERATED + "\n\n# Course")
    for gone in ("secret block", "--impl solutions", "For instructors", "release", "Details", "<!--  instructors", "test-command"):
        assert gone not in text.replace(GENERATED, ""), f"{gone!r} is still in the students' README:\n{text}"
    for kept in ("## For students", "Grade yourself.", "# not a heading: instructors", "## Data", "Data."):
        assert kept in text, f"{kept!r} went missing:\n{text}"
    with pytest.raises(HandoutError, match="line 2: <!-- instructors --> is never closed"):
        students_readme("a\n<!-- instructors -->\nb\n")
    with pytest.raises(HandoutError, match="line 1: <!-- /instructors --> without"):
        students_readme("<!-- /instructors -->\n")


@pytest.fixture(scope="module")
def handout(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("handout") / "cnn-labs"
    return out, build_handout(out)


def test_the_handout_holds_what_students_need_and_nothing_of_the_instructors(handout, tmp_path):
    out, names = handout
    for needed in ("labs/basics.py", "labs/grader/exercises.json", "labs/grader/trusted/runner.py", "labs/provided/data.py",
                   "tests/conftest.py", "tests/test_mlp.py", "notebooks/01_backprop_mlp.ipynb", "conftest.py",
                   "pyproject.toml", "requirements.txt", "README.md", ".gitignore"):
        assert needed in names and (out / needed).is_file(), f"the hand-out lacks {needed}"
    for never in ("solutions/", "tests/course/", "benchmarks/", "CONTRIBUTING.md", ".ci/", "labs/instructor/release.py"):
        assert not any(n.startswith(never) for n in names), f"the hand-out holds {never}"
    assert names.count("labs/instructor/__init__.py") == 1 and sum(n.startswith("labs/instructor/") for n in names) == 1
    generated = {p.relative_to(REPO_ROOT).as_posix(): t for p, t in generate()[0].items()}
    for module in EXERCISE_MODULES:
        assert (out / "labs" / f"{module}.py").read_text() == generated[f"labs/{module}.py"], f"labs/{module}.py is not the stub"
    readme = (out / "README.md").read_text()
    assert readme.startswith(GENERATED) and "## For instructors" not in readme and "<!-- instructors" not in readme
    for notebook in out.glob("notebooks/*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
    (out / ".git").mkdir(exist_ok=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "stray.txt").write_text("left from before")
    assert build_handout(out) == names, "rebuilding an earlier hand-out gave other files"
    assert (out / ".git" / "HEAD").is_file() and not (out / "stray.txt").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.tex").write_text("mine")
    with pytest.raises(HandoutError, match="not empty and holds no earlier hand-out"):
        build_handout(tmp_path / "other")
    with pytest.raises(HandoutError, match="would overwrite the course itself"):
        build_handout(REPO_ROOT / "labs" / "handout")


def _handout_python(root: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -S *args` in the hand-out: its labs/ first, site-packages reachable, this checkout's editable install not."""
    path = os.pathsep.join([str(root), *site.getsitepackages()])
    env = {k: v for k, v in os.environ.items() if k != "LABS_IMPL"}
    return subprocess.run([sys.executable, "-S", *args], cwd=root, env={**env, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_in_the_handout_grade_scores_the_stubs_0_and_release_says_it_is_not_there(handout):
    out, _ = handout
    located = _handout_python(out, "-c", "import labs, os; print(labs.__file__); print(os.path.isdir(os.path.join(labs.REPO_ROOT, 'solutions')))")
    assert located.stdout.split() == [str(out / "labs" / "__init__.py"), "False"], located
    process = _handout_python(out, "-m", "labs", "grade", "1.1")
    output = process.stdout + process.stderr
    assert process.returncode == 0, output[-3000:]
    assert re.search(r"Total: 0 / \d+ points", output) and "not implemented yet" in output, output[-3000:]
    assert "stale" not in output.lower() and "release" not in output, output[-3000:]
    release = _handout_python(out, "-m", "labs", "release")
    assert release.returncode != 0 and release.stderr.strip().count("\n") == 0 and "Traceback" not in release.stderr, release.stderr
    assert "instructors' tools" in release.stderr, release.stderr


@pytest.mark.slow
def test_pytest_in_the_handout_collects_every_graded_test_and_fails_the_stubs(handout):
    out, _ = handout
    collected = _handout_python(out, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert collected.returncode == 0, (collected.stdout + collected.stderr)[-3000:]
    assert re.search(r"^\d+ tests collected in", collected.stdout, re.MULTILINE), collected.stdout[-3000:]
    assert "error collecting" not in collected.stdout.lower() and "tests/course" not in collected.stdout, collected.stdout[-3000:]
    ran = _handout_python(out, "-m", "pytest", "-m", "ex1_1 or ex1_2", "-p", "no:cacheprovider")
    output = ran.stdout + ran.stderr
    assert ran.returncode == 1 and re.search(r"\d+ failed", output) and "error" not in output.splitlines()[-1], output[-3000:]
    assert "implementation under test: labs/ (your code)" in output and "not implemented yet" in output, output[-3000:]


# ---------------------------------------------------------------- late work, the platforms' gradebooks, similarity


def _graded_before(out: Path, scores: dict[str, dict[str, tuple[float, float]]], modules: dict[str, str]) -> None:
    """An output folder as grading leaves it (results.json, the graded modules), so that grade-class only assembles."""
    for key, points in scores.items():
        folder = out / "students" / key
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(_results(points)))
        (folder / "submission.json").write_text(json.dumps({"graded_at": "2024-01-06 12:00 UTC", "notes": []}))
        code = out / "work" / key / "submission"
        code.mkdir(parents=True)
        (code / "basics.py").write_text(modules[key])
    (out / SETTINGS_FILE).write_text(json.dumps({"settings": class_settings(EXERCISES, 60.0, 900.0, 20 * 2**20, None)}))


def _assemble(subs: Path, out: Path, capsys, **kwargs) -> str:
    status = grade_class(subs, out, exercises=EXERCISES, progress=False, **kwargs)
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    assert "0 to grade" in captured.out, captured.out
    return captured.out


def test_gradescope_times_extensions_and_a_per_day_policy_make_the_late_column_and_the_total(tmp_path, capsys):
    export = tmp_path / "export"
    for n in (1, 2, 3):
        _stubs(export / f"submission_{n}")
    (export / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :name: Ada\n    :sid: '101'\n  :created_at: 2024-01-02 10:00:00.5 +00:00\n"
        "submission_2:\n  :submitters:\n  - :name: Ben\n    :sid: '102'\n  :created_at: 2024-01-01 22:00:00 +00:00\n"
        "submission_3:\n  :submitters:\n  - :name: Cy\n    :sid: '103'\n  :created_at: 2024-01-04 09:00:00 +00:00\n")
    extensions = _write(tmp_path, "student,due\n103,2024-01-05T23:59\n", "extensions.csv")
    solution = (REPO_ROOT / "solutions" / "basics.py").read_text()
    out = tmp_path / "out"
    _graded_before(out, {"101": {"1.1": (3, 3), "1.2": (2, 2)}, "102": {"1.1": (3, 3), "1.2": (0, 2)},
                         "103": {"1.1": (3, 3), "1.2": (2, 2)}},
                   {"101": solution, "102": solution, "103": (export / "submission_3" / "basics.py").read_text()})
    printed = _assemble(export, out, capsys, due="2024-01-01T23:59", late_policy="10%/day,max=50%", extensions=extensions,
                        timezone="UTC", assignment_name="Lab 1 (4242)", lms_points=10.0)
    rows = _csv(out)
    assert (rows["101"]["Late"], _total(rows["101"])) == ("1", "4.5"), rows["101"]  # 10 h late: one day, 10% of 5
    assert (rows["102"]["Late"], _total(rows["102"])) == ("", "3"), rows["102"]
    assert (rows["103"]["Late"], _total(rows["103"])) == ("", "5"), "the extension should make Cy on time"
    feedback = (out / "students" / "101" / "feedback.md").read_text()
    assert "## Late submission" in feedback and "late policy 10%/day,max=50%" in feedback, feedback
    assert "**Total: 4.5 / 5 points (90%)** (before the late policy: 5; see below)" in feedback, feedback
    report = (out / "report.md").read_text()
    assert "## Late submissions" in report and "Late work: due 2024-01-01T23:59:00+00:00; late policy 10%/day,max=50%" in report
    with open(out / "gradebook-canvas.csv", newline="", encoding="utf-8-sig") as file:
        canvas = list(csv.reader(file))
    assert canvas[0][-1] == "Lab 1 (4242)" and canvas[1][-1] == "10" and ["Ada", "101", "101", "", "", "9"] == canvas[2], canvas
    assert not (out / "gradebook-moodle.csv").exists(), "no Moodle submission, no Moodle worksheet"
    similarity = (out / "similarity.md").read_text()
    assert "1 pair(s)" in similarity and "Ada" in similarity and "Ben" in similarity and "Cy" not in similarity, similarity
    assert "similarity.md" in printed and "gradebook-canvas.csv" in printed
    stored = json.loads((out / SETTINGS_FILE).read_text())
    assert stored["late"]["policy"] == "10%/day,max=50%" and stored["late"]["extensions"] == {"103": "2024-01-05T23:59:00+00:00"}
    _assemble(export, out, capsys, similarity=False)  # nothing given again: the stored settings still apply
    assert _csv(out) == rows and (out / "gradebook-canvas.csv").is_file()


def test_canvas_late_flags_moodle_worksheets_and_no_similarity(tmp_path, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    stub = next(t for p, t in generate()[0].items() if p.name == "basics.py")
    (subs / "doejane_LATE_777_889_basics.py").write_text(stub)
    (subs / "smithbob_778_890_basics.py").write_text(stub)
    (subs / "Zoë Müller_4711_assignsubmission_file_").mkdir()
    (subs / "Zoë Müller_4711_assignsubmission_file_" / "basics.py").write_text(stub)
    out = tmp_path / "out"
    _graded_before(out, {"777": {"1.1": (3, 3), "1.2": (2, 2)}, "778": {"1.1": (3, 3), "1.2": (2, 2)},
                         "4711": {"1.1": (1, 3), "1.2": (2, 2)}}, {"777": stub, "778": stub, "4711": stub})
    _assemble(subs, out, capsys, late_policy="zero", similarity=False)
    rows = _csv(out)
    assert (rows["777"]["Late"], _total(rows["777"])) == ("yes", "0"), rows["777"]
    assert (rows["778"]["Late"], _total(rows["778"])) == ("", "5"), rows["778"]
    feedback = (out / "students" / "777" / "feedback.md").read_text()
    assert md_text("Late (Canvas: _LATE in the file name), by how much unknown: 0 points (late policy: zero).") in feedback, feedback
    with open(out / "gradebook-moodle.csv", newline="", encoding="utf-8-sig") as file:
        moodle = list(csv.DictReader(file))
    assert [(r["Identifier"], r["Full name"], r["Grade"], r["Maximum grade"]) for r in moodle] == \
        [("Participant 4711", "Zoë Müller", "3.00", "5.00")], moodle
    assert not (out / "similarity.md").exists() and not (out / "gradebook-canvas.csv").exists()
    assert "Similarity: not checked (--no-similarity)." in (out / "report.md").read_text()


def test_late_settings_that_cannot_be_read_stop_the_run(tmp_path, capsys):
    _stubs(tmp_path / "subs" / "alice")
    for kwargs, words in (({"late_policy": "5 points a day"}, "late policy '5 points a day'"),
                          ({"due": "next friday"}, "expected a date and time"),
                          ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
                          ({"shard": (1, 2), "due": "2024-01-01"}, "give --due to the run without --shard")):
        assert grade_class(tmp_path / "subs", tmp_path / "out", exercises=EXERCISES, progress=False, **kwargs) == 2
        assert words in capsys.readouterr().err, kwargs
    assert not list(tmp_path.glob("out/students/*/results.json"))
