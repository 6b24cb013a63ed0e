"""Grading a whole class: `python -m labs grade-class SUBMISSIONS --out DIR`.

Each student is graded exactly as `python -m labs grade --submission` grades one: by that very
command, in a process of its own, which sweeps away whatever the student's code left running
before it ends. So a class's scores are single grading's scores, N students at a time (`--jobs`,
by default one per CPU; each grading then gets CPU/N threads for torch).

The run resumes. A student counts as graded once `students/<id>/results.json` exists; it is
written last, atomically, after the feedback, so an interrupted run (Ctrl-C, a killed job, a
reboot) loses only the students in progress: run the same command again and only those are
graded. `--force` regrades everyone, and is required when the settings (exercises, limits,
tests, hidden tests) differ from those the folder was graded with. `--only ID ...` regrades the
students it names (a folder under students/, or an ID of grades.csv), graded before or not, and
no one else; the gradebook and the report are written for the whole class all the same.

Points given by hand (`--overrides FILE`, class_report.read_overrides: `student,exercise,points,reason`)
are applied after grading, never to results.json: the grader's record stays, and the overrides
are stored beside it, in students/<id>/adjustments.json, for every later run (also one that
grades nobody); a run with another file replaces them, and a file of only its header drops them.
feedback.md is rewritten where they change it, and gives the reason.

Several machines sharing OUT (a Slurm job array): `--shard K/N` grades the K-th of N shares of the
class (share_of_class: every N-th student of the sorted list, the same on every machine) and writes
only what is each student's own, with atomic writes: students/<id>/, work/<id>/, and the export
.zip unpacked under work/.shard-K-of-N/. grade-class.json is written only when absent or changed,
with the same content by every shard. A run without --shard then assembles: it grades whoever
is still missing (a shard that failed), nobody twice, and writes grades.csv and report.md.

A submission that cannot be graded (an empty folder, no exercise module, an unreadable or too
large archive) gets 0 points, results.json and feedback.md saying why, and a line in the report;
the run goes on. Hidden tests that cannot even be collected stop the run: that is the
instructor's to fix, and no student should see its traceback.

OUT/
  students/<id>/results.json     Gradescope's shape, as `grade --json` writes it
  students/<id>/feedback.md      for the student: points per exercise, each first failure in plain words
  students/<id>/submission.json  what was graded, and when: where the modules were found, what was skipped
  students/<id>/adjustments.json the points given by hand that apply (--overrides), when any do
  grades.csv, report.md, plots/  the gradebook and the class report (class_report.py)
  grade-class.json               the settings the folder was graded with
  work/<id>/                     the modules that were graded and the grader's log; may be deleted
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from labs import EXERCISE_MODULES, REPO_ROOT
from labs.grader import reaping
from labs.grader.catalog import CATALOG_PATH, Exercise, graded_test_files, load_catalog
from labs.grader.trusted.runner import DEFAULT_TIME_BUDGET, DEFAULT_TIMEOUT, not_graded_results
from labs.grader.text import printable
from labs.instructor.class_report import (TOTAL, Override, OverrideError, StudentGrade, code_span, feedback_markdown,
                                          final_points, gradebook_total, match_overrides, md_text, overrides_from_json,
                                          overrides_to_json, points, possible_points, read_overrides,
                                          write_grades_csv, write_report)
from labs.instructor.late_work import (LatePolicy, Lateness, LateWorkError, apply, late_column, parse_due, read_extensions,
                                      timezone as zone)
from labs.instructor.lms_export import GradeRow, write_canvas_gradebook, write_moodle_worksheet
from labs.instructor.submissions import MAX_BYTES, Submission, SubmissionProblem, find_submissions, unpack
from labs.provided.atomic import write_json_atomically, write_text_atomically

SETTINGS_FILE = "grade-class.json"


class ClassAbort(Exception):
    """Stop the whole run: the problem is the instructor's (hidden tests that cannot be collected)."""


@dataclass
class _Run:
    """What the graders of one run share."""

    out: Path
    exercises: list[str]
    timeout: float
    time_budget: float
    extra_tests: Path | None
    max_bytes: int
    env: dict[str, str]
    catalog: list[Exercise]
    graded_at: str
    stopping: threading.Event = field(default_factory=threading.Event)
    running: set[subprocess.Popen] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def default_jobs() -> int:
    """One grading per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def grade_class(submissions: Path, out: Path, jobs: int | None = None, exercises: list[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, time_budget: float = DEFAULT_TIME_BUDGET, extra_tests: Path | None = None,
                force: bool = False, max_bytes: int = MAX_BYTES, progress: bool = True, only: list[str] | None = None,
                overrides: Path | None = None, shard: tuple[int, int] | None = None, similarity: bool = True,
                due: str | None = None, extensions: Path | None = None, late_policy: str | None = None,
                timezone: str | None = None, assignment_name: str | None = None, lms_points: float | None = None) -> int:
    """Grade every submission in `submissions` into `out`; 0 when done, 2 when it cannot run, 130 when interrupted.

    Args:
        only: regrade these students (keys, the folders under students/, or IDs), graded before or not;
            the others stay as they are. The gradebook and the report are written for the whole class.
        overrides: a CSV file of points given by hand (class_report.read_overrides), applied after
            grading; stored per student, so later runs without it keep them (an empty file drops them).
        shard: (K, N): grade only the K-th of N shares of the class (K from 1), and write no gradebook:
            N machines sharing `out` split a class; a later run without `shard` assembles.
        similarity: write similarity.md and its side-by-side views (similarity.py) when assembling.
        due, extensions, late_policy, timezone: the late-work settings (late_work.py): the due date
            (ISO 8601; "none" removes it), a CSV of extensions (student ID, new due date), the
            policy ("none", "zero", "10%/day,max=50%,grace=15min") and the timezone of times written
            without one. Stored in grade-class.json: later runs keep them unless given again.
        assignment_name, lms_points: gradebook-canvas.csv's assignment column (written when a name
            is known) and the points of the assignment in Canvas and Moodle (default: the grader's
            total). Stored in grade-class.json too.

    Processes that an interrupted grading leaves behind are reparented to the nearest child
    subreaper: the CLI (`run_grade_class`) is one and sweeps them; a caller of this function
    should be one too (`reaping.become_subreaper()`, then `reaping.kill_children()`).
    """
    submissions, out = Path(submissions), Path(out)
    jobs = jobs or default_jobs()
    catalog = load_catalog()
    known = [exercise.id for exercise in catalog]
    unknown = [ex for ex in exercises or [] if ex not in known]
    if unknown:
        return _fail(f"unknown exercise id(s) {', '.join(unknown)}; the exercises are {', '.join(known)}")
    if not submissions.exists():
        return _fail(f"{submissions} does not exist")
    if out.resolve() == submissions.resolve() or submissions.resolve() in out.resolve().parents:
        return _fail(f"--out {out} is inside {submissions}: the next run would take it for a student; choose a folder outside")
    if shard is not None and not (len(shard) == 2 and 1 <= shard[0] <= shard[1]):
        return _fail(f"--shard {'/'.join(map(str, shard))}: expected K/N with 1 <= K <= N, e.g. 1/4 ... 4/4")
    if only and force:
        return _fail("--only regrades the students it names, --force regrades everyone: use one of them")
    assembling = {"--only": only, "--overrides": overrides, "--due": due, "--extensions": extensions,
                  "--late-policy": late_policy, "--timezone": timezone, "--assignment-name": assignment_name,
                  "--lms-points": lms_points}
    given = [flag for flag, value in assembling.items() if value]
    if shard is not None and given:
        return _fail(f"--shard grades a share of the class and writes no gradebook: give {', '.join(given)} "
                     "to the run without --shard that assembles it")
    if lms_points is not None and not lms_points > 0:
        return _fail(f"--lms-points {lms_points:g}: the assignment's points in Canvas or Moodle must be more than 0")
    if extra_tests is not None:
        extra_tests = Path(extra_tests).resolve()
        if not extra_tests.is_dir():
            return _fail(f"the hidden tests folder {extra_tests} does not exist")
        if not list(extra_tests.glob("test_*.py")):
            return _fail(f"the hidden tests folder {extra_tests} holds no test_*.py file")
    try:
        rows = read_overrides(Path(overrides)) if overrides is not None else None
    except OverrideError as error:
        return _fail(str(error))
    wanted = [e for e in catalog if not exercises or e.id in exercises]
    settings = class_settings(exercises, timeout, time_budget, max_bytes, extra_tests)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_json(out / SETTINGS_FILE)
    if previous and previous.get("settings") != settings and not force:
        changed = ", ".join(k for k in settings if previous.get("settings", {}).get(k) != settings[k])
        return _fail(f"{out} was graded with other settings (changed: {changed}); add --force to regrade everyone, or choose another --out")
    try:  # a time written without a timezone is in the course's: this run's --timezone, or the one stored before
        new_late = _late_settings(due, extensions, late_policy, timezone or (previous or {}).get("late", {}).get("timezone"))
    except LateWorkError as error:
        return _fail(str(error))
    if timezone is None:
        new_late.pop("timezone", None)

    # A shard unpacks a class's export .zip into a folder of its own: shards start together, and
    # find_submissions empties the folder it unpacks into.
    work = out / "work" / (f".shard-{shard[0]}-of-{shard[1]}" if shard else "")
    try:
        found, notes = find_submissions(submissions, work)
    except SubmissionProblem as problem:
        return _fail(str(problem))
    if not found:
        return _fail(f"no submission in {submissions}: expected one folder or .zip per student, Moodle's or Canvas's "
                     "download, or Gradescope's export")
    mine = share_of_class(found, shard)
    chosen = None
    if only:
        chosen, missing = _choose(found, only)
        if missing:
            return _fail(f"--only: no student {', '.join(map(repr, missing))} in {submissions}; name them by their folder "
                         f"under {out / 'students'} or their ID (for example {', '.join(s.key for s in found[:3])})")

    grades: dict[str, StudentGrade] = {}
    for submission in found:
        earlier = _load_graded(out / "students" / submission.key, submission)
        if earlier is not None:
            grades[submission.key] = earlier
    if rows is not None:  # before grading: a typo in the file should not wait for the end of a long run
        try:
            match_overrides(rows, [grades.get(s.key) or _placeholder(s) for s in found], wanted, overrides)
        except OverrideError as error:
            return _fail(str(error))

    record = dict(previous or {})
    record.update({"submissions": str(submissions.resolve()), "settings": settings})
    late = {**record.get("late", {}), **new_late}
    lms = {**record.get("lms", {}), **{k: v for k, v in (("assignment_name", assignment_name), ("points", lms_points)) if v}}
    record.update({key: value for key, value in (("late", late), ("lms", lms)) if value})
    if record != previous:  # written only when it changes: N shards starting together find the same and write nothing
        write_json_atomically(out / SETTINGS_FILE, record)
    regrade = [s for s in found if s.key in chosen] if chosen is not None else (mine if force else [])
    for submission in regrade:  # a regrade that fails leaves the student ungraded (rerun to retry), never the old grade
        (out / "students" / submission.key / "results.json").unlink(missing_ok=True)
        grades.pop(submission.key, None)
    todo = regrade if chosen is not None else [s for s in mine if s.key not in grades]
    share = f"; shard {shard[0]}/{shard[1]} holds {len(mine)}" if shard else ""
    if chosen is not None:
        print(f"{len(found)} submission(s) in {submissions}: {len(todo)} to grade (--only), "
              f"the other {len(found) - len(todo)} kept as they are, {jobs} at a time", flush=True)
    else:
        print(f"{len(found)} submission(s) in {submissions}{share}: {len(mine) - len(todo)} graded before, "
              f"{len(todo)} to grade, {jobs} at a time", flush=True)
    for note in notes:
        print(f"note: {printable(note, newlines=False)}", flush=True)

    env = {k: v for k, v in os.environ.items() if k != "LABS_IMPL"}
    threads = str(max(1, default_jobs() // jobs))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # N gradings at once share the CPUs instead of fighting over them
        env.setdefault(name, threads)
    run = _Run(out, [e.id for e in wanted] if exercises else [], timeout, time_budget, extra_tests, max_bytes, env, wanted,
               datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
    started = time.monotonic()
    status = _grade_all(run, todo, jobs, grades, progress)
    if status != 0:
        return status
    elapsed = time.monotonic() - started
    if shard is not None:
        left = sum(1 for s in found if s.key not in grades and not (out / "students" / s.key / "results.json").is_file())
        print(f"shard {shard[0]}/{shard[1]}: graded {len(todo)} submission(s) in {elapsed:.0f} s. When every shard is done, "
              f"run the same command without --shard to write grades.csv and report.md"
              + (f" ({left} submission(s) of other shards not graded yet)" if left else ""))
        return 0

    ordered = [grades.get(s.key) or _placeholder(s) for s in found]
    try:
        _apply_overrides(out, ordered, wanted, rows, overrides)
    except OverrideError as error:
        return _fail(f"{error}\nNothing was written but the grading: fix the file and run again (nobody is graded twice)")
    by_key = {s.key: s for s in found}
    late_notes = _apply_late(ordered, by_key, wanted, late)
    _write_feedback(out, ordered, wanted)
    write_grades_csv(out / "grades.csv", ordered, wanted)
    exports = _write_lms_files(out, ordered, by_key, wanted, lms, late.get("timezone"))
    similar = _write_similarity(out, ordered, wanted) if similarity else "Similarity: not checked (--no-similarity)."
    before = sum(1 for s in found if s.key in grades) - len([s for s in todo if s.key in grades])
    header = [
        f"{len(found)} submission(s) from {code_span(submissions)}, report written {run.graded_at}.",
        f"Exercises: {', '.join(e.id for e in wanted) if exercises else 'all'}; per-test limit {timeout:g} s, "
        f"{time_budget:g} s per submission; hidden tests: "
        + (f"{len(list(extra_tests.glob('test_*.py')))} file(s) from {code_span(extra_tests)}." if extra_tests else "none."),
        f"This run graded {len(todo)} submission(s) in {elapsed:.0f} s ({jobs} at a time); "
        f"{before} had been graded before. Gradebook: `grades.csv`; feedback: `students/<id>/feedback.md`.",
        *[f"Note: {md_text(note)}." for note in notes],
        _late_line(late), *[f"Note: {note}." for note in late_notes],
        similar,
        *([f"For the learning platform: {', '.join(code_span(name) for name in exports)}."] if exports else []),
    ]
    report = write_report(out, ordered, wanted, header)
    problems = sum(1 for g in ordered if g.problem)
    errors = sum(1 for g in ordered if g.results is None and not g.problem)
    rate = f" ({60 * len(todo) / elapsed:.1f} per minute)" if todo and elapsed >= 10 else ""
    print(f"graded {len(todo)} submission(s) in {elapsed:.0f} s{rate}; {problems} could not be graded"
          + (f"; {errors} not graded (rerun without --only to grade them)" if errors else ""))
    extra = [out / name for name in exports] + ([out / "similarity.md"] if similarity and (out / "similarity.md").is_file() else [])
    print(f"wrote {out / 'grades.csv'}, {report}, " + "".join(f"{path}, " for path in extra)
          + f"and {out / 'students'}/<id>/feedback.md")
    return 0


def class_settings(exercises: list[str] | None, timeout: float, time_budget: float, max_bytes: int,
                   extra_tests: Path | None) -> dict:
    """What a folder's grades depend on (grade-class.json's "settings"): another value means regrading everyone."""
    wanted = [e.id for e in load_catalog() if not exercises or e.id in exercises]
    return {
        "exercises": wanted if exercises else "all",
        "timeout": timeout,
        "time_budget": time_budget,
        "max_unpacked_bytes": max_bytes,
        "graded_tests": _digest(graded_test_files() + [REPO_ROOT / "conftest.py", CATALOG_PATH]),
        "hidden_tests": _digest(sorted(Path(extra_tests).glob("test_*.py"))) if extra_tests else None,
    }


def share_of_class(found: list[Submission], shard: tuple[int, int] | None) -> list[Submission]:
    """The submissions that shard (K, N) grades: the K-th of every N in the class's order (all of them without a shard).

    find_submissions sorts the class by key, so every machine that lists the same folder computes
    the same shares, each one N-th of the class to within one student, and no two shares meet.
    """
    if shard is None:
        return list(found)
    k, n = shard
    return [submission for index, submission in enumerate(found) if index % n == k - 1]


def _choose(found: list[Submission], names: list[str]) -> tuple[set[str], list[str]]:
    """The keys of the submissions that `names` name (a key, or a student's ID), and the names that name none."""
    keys, missing = set(), []
    for name in names:
        matching = {s.key for s in found if s.key == name or any(p.id == name for p in s.people)}
        keys |= matching
        if not matching:
            missing.append(name)
    return keys, missing


def _placeholder(submission: Submission) -> StudentGrade:
    """A student this folder holds no grading for yet (not in this run's --only, or another shard's)."""
    return StudentGrade(submission.key, submission.label, submission.people, None,
                        ["not graded yet: run grade-class without --only or --shard to grade it"])


ADJUSTMENTS_FILE = "adjustments.json"  # students/<id>/: the points given by hand that apply to this student


def _apply_overrides(out: Path, grades: list[StudentGrade], exercises: list[Exercise], rows: list[Override] | None,
                     source: Path | None) -> None:
    """Set each grade's overrides: from `rows` when given (and store them), else from what an earlier run stored.

    results.json is never touched: the grader's record stays as it was, and the points given by hand
    live beside it in adjustments.json, which a run with --overrides rewrites for the whole class.
    """
    graded = {e.id for e in exercises} | {TOTAL}
    if rows is not None:
        matched = match_overrides(rows, grades, exercises, source)
        for grade in grades:
            path = out / "students" / grade.key / ADJUSTMENTS_FILE
            grade.overrides = matched.get(grade.key, [])
            if grade.overrides:
                data = {"source": str(Path(source).resolve()), "overrides": overrides_to_json(grade.overrides)}
                if _read_json(path) != data:
                    write_json_atomically(path, data)
            else:
                path.unlink(missing_ok=True)
        return
    for grade in grades:
        stored = overrides_from_json(_read_json(out / "students" / grade.key / ADJUSTMENTS_FILE))
        grade.overrides = [o for o in stored if o.exercise in graded]
        for o in stored:
            if o.exercise not in graded:
                grade.notes.append(f"the override of exercise {o.exercise} was not applied: it is not graded in this folder")


def _write_feedback(out: Path, grades: list[StudentGrade], exercises: list[Exercise]) -> None:
    """feedback.md for every graded student, rewritten only where its text changed (an override given or dropped)."""
    for grade in grades:
        if grade.results is None:
            continue
        path = out / "students" / grade.key / "feedback.md"
        text = feedback_markdown(grade, exercises, grade.graded_at)
        try:
            if path.read_text(encoding="utf-8") == text:
                continue
        except OSError:
            pass
        write_text_atomically(path, text)


# ---------------------------------------------------------------- late work, the learning platforms' files, similarity


def _late_settings(due: str | None, extensions: Path | None, policy: str | None, tz: str | None) -> dict:
    """The late-work settings given to this run, checked and as grade-class.json stores them (only those given).

    Raises:
        LateWorkError: a due date, policy, timezone or extensions file that cannot be read.
    """
    found: dict = {}
    if tz is not None:
        zone(tz)  # an unknown name is refused here, not at the end of the run
        found["timezone"] = tz
    if due is not None:
        found["due"] = None if due.strip().lower() == "none" else parse_due(due, tz).isoformat()
    if policy is not None:
        found["policy"] = str(LatePolicy.parse(policy))
    if extensions is not None:
        found["extensions"] = {student: moment.isoformat() for student, moment in read_extensions(Path(extensions), tz).items()}
        found["extensions_file"] = str(Path(extensions).resolve())
    return found


def _aware(moment: datetime.datetime | None, tz: str | None) -> datetime.datetime | None:
    """A time with its timezone: the course's (`--timezone`, else UTC) when it was written without one."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone(tz))


def _lateness(submission: Submission, due: datetime.datetime | None, extension: datetime.datetime | None,
              tz: str | None) -> Lateness:
    """How late a submission is: from its time (Gradescope) and the due date, or from Canvas's _LATE flag."""
    submitted = _aware(submission.submitted_at, tz)
    if submitted is not None:
        found = Lateness.from_times(submitted, due or _aware(submission.due_at, tz), extension)
        late_due = _aware(submission.late_due_at, tz)
        if found.flagged and extension is None and late_due is not None and submitted > late_due:
            return Lateness(found.days, True, f"{found.source}, after the late due date {late_due:%Y-%m-%d %H:%M %Z}")
        return found
    if submission.marked_late:
        return Lateness.flag("Canvas: _LATE in the file name")
    return Lateness.on_time("no submission time")


def _apply_late(grades: list[StudentGrade], submissions: dict[str, Submission], exercises: list[Exercise],
                late: dict) -> list[str]:
    """Set each grade's Late cell and, when late, its total after the policy and why; returns notes for the report."""
    tz = late.get("timezone")
    policy = LatePolicy.parse(late.get("policy") or "none")
    due = datetime.datetime.fromisoformat(late["due"]) if late.get("due") else None
    extensions = {student: datetime.datetime.fromisoformat(moment) for student, moment in late.get("extensions", {}).items()}
    max_total = sum(possible_points(grades, exercises).values())
    untimed = 0
    for grade in grades:
        submission = submissions[grade.key]
        extension = max((extensions[p.id] for p in grade.people if p.id in extensions), default=None)
        lateness = _lateness(submission, due, extension, tz)
        grade.late, grade.late_note, grade.late_total = late_column(lateness), "", None
        if due is not None and submission.submitted_at is None and not submission.marked_late:
            untimed += 1
        if not lateness.flagged or grade.results is None:
            continue
        if lateness.days is None and extension is not None:  # a flag from Canvas's own due date, and an extension here
            grade.late_note = (f"late ({lateness.source}), but an extension to {extension:%Y-%m-%d %H:%M %Z} is on file: "
                               "nothing deducted; check the submission time by hand")
            continue
        total = final_points(grade, exercises)[1]
        grade.late_total, grade.late_note = apply(policy, total, max_total, lateness)
    notes = []
    if untimed:
        notes.append(f"a due date is set, but {untimed} submission(s) carry no submission time (plain folders and Moodle's "
                     "downloads do not say when): their lateness is not known")
    return notes


def _late_line(late: dict) -> str:
    if not late:
        return "Late work: no due date or policy set (Canvas's _LATE flag and Gradescope's times still fill the Late column)."
    parts = [f"due {late['due']}" if late.get("due") else "no due date (Gradescope's own where it gives one)",
             f"late policy {late.get('policy') or 'none'}"]
    if late.get("extensions"):
        parts.append(f"{len(late['extensions'])} extension(s) from {code_span(late.get('extensions_file', ''))}")
    if late.get("timezone"):
        parts.append(f"timezone {md_text(late['timezone'])}")
    return f"Late work: {'; '.join(parts)}."


def _write_lms_files(out: Path, grades: list[StudentGrade], submissions: dict[str, Submission], exercises: list[Exercise],
                     lms: dict, tz: str | None) -> list[str]:
    """gradebook-canvas.csv (when an assignment name is known) and gradebook-moodle.csv (for Moodle's submissions)."""
    max_total = sum(possible_points(grades, exercises).values())
    if max_total <= 0:
        return []
    points_possible = float(lms.get("points") or max_total)
    everyone, moodle = [], []
    for grade in grades:
        submission = submissions[grade.key]
        score = gradebook_total(grade, exercises) if grade.results is not None else None
        for person in grade.people:
            row = GradeRow(printable(person.id, newlines=False), printable(person.name, newlines=False), printable(person.sis_id, newlines=False),
                           printable(person.login, newlines=False), email=person.login if "@" in person.login else "",
                           score=score, max_score=max_total, late=grade.late, feedback=grade.late_note,
                           submitted_at=_aware(submission.submitted_at, tz))
            everyone.append(row)
            if submission.platform == "moodle":
                moodle.append(row)
    written = []
    if lms.get("assignment_name"):
        write_canvas_gradebook(out / "gradebook-canvas.csv", everyone, str(lms["assignment_name"]), points_possible)
        written.append("gradebook-canvas.csv")
    if moodle:
        write_moodle_worksheet(out / "gradebook-moodle.csv", moodle, points_possible)
        written.append("gradebook-moodle.csv")
    return written


def _starter(modules: list[str]) -> dict[str, str]:
    """{module: the stub as handed out}: release's stubs from solutions/, or labs/ where there is none."""
    if (REPO_ROOT / "solutions").is_dir():
        from labs.instructor.release import generate

        generated = {path.stem: text for path, text in generate(REPO_ROOT)[0].items() if path.suffix == ".py"}
        return {m: generated[m] for m in modules if m in generated}
    return {m: (REPO_ROOT / "labs" / f"{m}.py").read_text(encoding="utf-8") for m in modules}


def _write_similarity(out: Path, grades: list[StudentGrade], exercises: list[Exercise]) -> str:
    """similarity.md and its side-by-side views from the graded modules in work/<id>/submission; a line for the report."""
    try:
        from labs.instructor.similarity import find_similar, write_similarity_report
    except ImportError as error:
        return f"Similarity: not checked ({md_text(error.name or error)} is not installed; `pip install -e .` installs it)."
    modules = [m for m in EXERCISE_MODULES if m in {e.module for e in exercises}]
    code: dict[str, dict[str, str]] = {}
    gone = 0
    for grade in grades:
        if grade.results is None or grade.problem:
            continue
        folder = out / "work" / grade.key / "submission"
        if not folder.is_dir():
            gone += 1
            continue
        code[grade.key] = {m: (folder / f"{m}.py").read_text(encoding="utf-8", errors="replace")
                           for m in modules if (folder / f"{m}.py").is_file()}
    pairs = find_similar(code, _starter(modules))
    labels = {g.key: ", ".join(printable(p.name, newlines=False) for p in g.people) or g.label for g in grades}
    write_similarity_report(out, pairs, labels)
    missing = f"; {gone} submission(s) left out, their work/<id>/ folder deleted" if gone else ""
    return (f"Similar submissions: {len(pairs)} pair(s) of {len(code)} submission(s) reached the threshold, in "
            f"`similarity.md` (evidence for a conversation, never a verdict){missing}.")


def _grade_all(run: _Run, todo: list[Submission], jobs: int, grades: dict[str, StudentGrade], progress: bool) -> int:
    """Grade `todo`, `jobs` at a time, into `grades`; 0, or 130 when interrupted, 2 when aborted."""
    if not todo:
        return 0
    previous_handler = None
    if threading.current_thread() is threading.main_thread():  # `kill` (SIGTERM) stops a run as Ctrl-C does
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    bar = tqdm(total=len(todo), desc="grading", unit="student", dynamic_ncols=True, disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
    futures: dict[Future, Submission] = {pool.submit(_grade_safely, run, s): s for s in todo}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                grade = future.result()  # ClassAbort passes through; other errors are caught in _grade_safely
                if grade is None:
                    continue
                grades[grade.key] = grade
                bar.write(_one_line(grade))
                bar.update(1)
    except (KeyboardInterrupt, ClassAbort) as stop:
        _stop(run, futures)
        bar.close()
        graded = sum(1 for s in todo if s.key in grades)
        if isinstance(stop, ClassAbort):
            print(f"\nstopped: {printable(stop)}\nFix the hidden tests, then run the same command again.", file=sys.stderr)
            return 2
        print(f"\ninterrupted: {graded} of {len(todo)} graded in this run; run the same command again to grade the rest",
              file=sys.stderr)
        return 130
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    bar.close()
    return 0


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(run: _Run, futures: dict[Future, Submission]) -> None:
    """Cancel what has not started and kill the gradings in progress; their students stay ungraded."""
    run.stopping.set()
    for future in futures:
        future.cancel()
    deadline = time.monotonic() + 60
    while any(not f.done() for f in futures) and time.monotonic() < deadline:
        with run.lock:
            processes = list(run.running)
        for process in processes:
            reaping.kill_process(process)
        time.sleep(0.1)


def _one_line(grade: StudentGrade) -> str:
    """A progress line for the instructor's terminal: nothing in it from a submission can move the cursor or clear the screen."""
    if grade.problem:
        line = f"{grade.key}: could not be graded: {grade.problem}"
    elif grade.results is None:
        line = f"{grade.key}: not graded: {'; '.join(grade.notes)}"
    else:
        line = f"{grade.key}: {points(grade.score)} / {points(float(grade.results.get('max_score', 0)))}"
    return printable(line, newlines=False)


def _grade_safely(run: _Run, submission: Submission) -> StudentGrade | None:
    """`_grade_one`, turning an unexpected error into an ungraded student (retried by the next run)."""
    try:
        return _grade_one(run, submission)
    except ClassAbort:
        raise
    except Exception as error:  # a bug here, a full disk: this student waits for the next run
        if run.stopping.is_set():
            return None
        return StudentGrade(submission.key, submission.label, submission.people, None,
                            [f"internal error: {type(error).__name__}: {error}"])


def _grade_one(run: _Run, submission: Submission) -> StudentGrade | None:
    """Unpack and grade one submission, then write its files; None when the run is stopping."""
    if run.stopping.is_set():
        return None
    work = run.out / "work" / submission.key
    info = {"key": submission.key, "label": submission.label, "people": [asdict(p) for p in submission.people],
            "sources": [name for _, name in submission.sources]}
    try:
        unpacked = unpack(submission, work, run.max_bytes)
    except SubmissionProblem as problem:
        results = not_graded_results(str(problem))
        grade = StudentGrade(submission.key, submission.label, submission.people, results, [], str(problem), run.graded_at)
        _save(run, grade, {**info, "problem": str(problem)})
        return grade
    notes = list(unpacked.notes)
    graded_modules = {f"{exercise.module}.py" for exercise in run.catalog}
    missing = [name for name in unpacked.missing if name in graded_modules]
    if missing:
        notes.append(f"graded without {', '.join(missing)} (0 points in their exercises)")
    command = [sys.executable, "-m", "labs", "grade", *run.exercises, "--submission", str(unpacked.folder),
               "--json", str(work / "results.json"), "--timeout", str(run.timeout), "--time-budget", str(run.time_budget),
               "--shards", "1"]  # the students run side by side already: one test process each
    if run.extra_tests is not None:
        command += ["--extra-tests", str(run.extra_tests)]
    limit = run.time_budget + 2 * (run.timeout + 60) + 300  # grade ends itself within its budget; this is a backstop
    with open(work / "grade.log", "wb") as log:
        with run.lock:
            if run.stopping.is_set():
                return None
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=run.env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            run.running.add(process)
        try:
            returncode = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            reaping.kill_process(process)
            process.wait()
            returncode = None
        finally:
            with run.lock:
                run.running.discard(process)
    if run.stopping.is_set():
        return None
    results = _read_json(work / "results.json")
    log_name = (work / "grade.log").relative_to(run.out)
    if returncode is None or results is None:
        why = "did not finish in time" if returncode is None else f"ended with exit code {returncode} and no results"
        return StudentGrade(submission.key, submission.label, submission.people, None, [f"the grader {why}; see {log_name}"])
    if returncode != 0:  # `grade` exits 2 only for what is never the student's doing
        output = str(results.get("output", ""))
        if (results.get("could_not_grade") or {}).get("instructor_error"):
            raise ClassAbort(f"grading {submission.key}: {output.removeprefix('could not grade: ')}")
        return StudentGrade(submission.key, submission.label, submission.people, None, [f"{output}; see {log_name}"])
    grade = StudentGrade(submission.key, submission.label, submission.people, results, notes, graded_at=run.graded_at)
    _save(run, grade, {**info, "found_in": unpacked.found_in, "missing": unpacked.missing, "notes": notes})
    shutil.rmtree(work / "files", ignore_errors=True)  # unpacked archives: the graded modules stay in work/<id>/submission
    return grade


def _save(run: _Run, grade: StudentGrade, info: dict) -> None:
    """submission.json and feedback.md, then results.json: once it exists, the student counts as graded."""
    folder = run.out / "students" / grade.key
    folder.mkdir(parents=True, exist_ok=True)
    graded = {e.id for e in run.catalog} | {TOTAL}  # points given by hand before (a regrade keeps them)
    grade.overrides = [o for o in overrides_from_json(_read_json(folder / ADJUSTMENTS_FILE)) if o.exercise in graded]
    write_json_atomically(folder / "submission.json", {**info, "graded_at": run.graded_at})
    write_text_atomically(folder / "feedback.md", feedback_markdown(grade, run.catalog, run.graded_at))
    write_json_atomically(folder / "results.json", grade.results)


def _load_graded(folder: Path, submission: Submission) -> StudentGrade | None:
    """A student graded by an earlier run, read back from its files; None when not graded yet."""
    results = _read_json(folder / "results.json")
    if results is None:
        return None
    info = _read_json(folder / "submission.json") or {}
    graded_at = info.get("graded_at") or datetime.datetime.fromtimestamp(
        (folder / "results.json").stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return StudentGrade(submission.key, submission.label, submission.people, results, list(info.get("notes", [])),
                        str(info.get("problem", "")), str(graded_at))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def parse_shard(text: str) -> tuple[int, int]:
    """"2/8" -> (2, 8): the second of eight shares of the class (K from 1, as Slurm's --array=1-8 counts).

    Raises:
        ValueError: not K/N with 1 <= K <= N, with a message that says what to write.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, for example 1/4 ... 4/4 "
                         "(in a Slurm job array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=1-N)")
    return int(match[1]), int(match[2])


def run_grade_class(submissions: str, out: str, jobs: int | None, exercises: list[str] | None, timeout: float,
                    time_budget: float, extra_tests: str | None, force: bool, max_unpacked_mb: float,
                    only: list[str] | None = None, overrides: str | None = None, shard: str | None = None,
                    similarity: bool = True, due: str | None = None, extensions: str | None = None,
                    late_policy: str | None = None, timezone: str | None = None, assignment_name: str | None = None,
                    lms_points: float | None = None) -> int:
    """`python -m labs grade-class`: adopt what gradings leave behind, and end it when the run ends."""
    try:
        shares = parse_shard(shard) if shard is not None else None
    except ValueError as error:
        return _fail(str(error))
    reaping.become_subreaper()
    try:
        return grade_class(Path(submissions), Path(out), jobs, exercises, timeout, time_budget,
                           Path(extra_tests) if extra_tests else None, force, int(max_unpacked_mb * 2**20),
                           only=only, overrides=Path(overrides) if overrides else None, shard=shares, similarity=similarity,
                           due=due, extensions=Path(extensions) if extensions else None, late_policy=late_policy,
                           timezone=timezone, assignment_name=assignment_name, lms_points=lms_points)
    except KeyboardInterrupt:  # before or after grading: nothing half-written to undo
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        reaping.kill_children()
