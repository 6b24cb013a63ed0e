"""What a class's grading leaves for people to read: feedback, the gradebook, the class report.

Everything here is computed from the results.json files that grading wrote (Gradescope's shape:
one entry per test with its exercise id, points, status and plain-words message), so a resumed
run reports on every student, graded now or earlier. Hidden tests reach these files only as
"hidden test" and "a hidden test failed (worth N points; ...)": nothing here can leak them.

- `feedback_markdown`: for one student, the points of each exercise and its first failure.
- `write_grades_csv`: one row per student (a group's members get a row each), a column per
  exercise and the total. The first columns are those Canvas's gradebook import matches on
  (Student, ID, SIS User ID, SIS Login ID, Section); Moodle's CSV import maps any column to
  its ID field. UTF-8 with a byte-order mark, so that Excel reads accented names as they are.
- `write_report`: for the instructor, the submissions that need a look, per exercise the
  distribution of scores and the mean, and the most common first failures across the class,
  grouped by test and message, with how many students hit each: next week's re-explanations.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # without pyplot: no backend, no window, nothing global

from labs.grader.catalog import Exercise
from labs.instructor.submissions import Person
from labs.provided.atomic import write_atomically, write_text_atomically

HIDDEN_NAME = "hidden test"
MESSAGE_LINES = 12  # lines of a failure message kept in feedback and in the report


@dataclass
class ExerciseOutcome:
    """One exercise of one student, read back from results.json."""

    id: str
    earned: float = 0.0
    possible: float = 0.0
    first_failure: tuple[str, str] | None = None  # (test name, message); a public test's when any failed
    not_attempted: bool = False  # 0 points, and its stub's NotImplementedError or a missing module says why
    hidden_failed: int = 0  # hidden tests that failed
    hidden_lost: float = 0.0  # the points they were worth


@dataclass
class StudentGrade:
    """One submission's grading, as the report and the gradebook need it."""

    key: str
    label: str
    people: list[Person]
    results: dict | None  # results.json; None when not graded (an error in the grader, or not reached)
    notes: list[str] = field(default_factory=list)  # what the instructor should know (skipped files, missing modules)
    problem: str = ""  # why it could not be graded at all (0 points)

    @property
    def score(self) -> float:
        return float(self.results.get("score", 0.0)) if self.results else 0.0


def outcomes(results: dict | None, exercises: list[Exercise]) -> dict[str, ExerciseOutcome]:
    """Points and first failure per exercise, from the tests of results.json."""
    found = {exercise.id: ExerciseOutcome(exercise.id) for exercise in exercises}
    failed: dict[str, list[tuple[str, str]]] = {}
    for test in (results or {}).get("tests", []):
        outcome = found.get(str(test.get("number")))
        if outcome is None:
            continue
        outcome.earned += float(test.get("score", 0.0))
        outcome.possible += float(test.get("max_score", 0.0))
        if test.get("status") != "passed":
            name = test_name(test.get("name", ""))
            failed.setdefault(outcome.id, []).append((name, str(test.get("output", ""))))
            if name == HIDDEN_NAME:
                outcome.hidden_failed += 1
                outcome.hidden_lost += float(test.get("max_score", 0.0))
    for exercise_id, failures in failed.items():
        outcome = found[exercise_id]
        public = [f for f in failures if f[0] != HIDDEN_NAME]
        outcome.first_failure = (public or failures)[0]
        outcome.not_attempted = outcome.earned == 0 and any(
            f"NotImplementedError: Exercise {exercise_id} " in message or "is missing from the submission" in message
            for _, message in failures
        )
    return found


def test_name(entry_name: str) -> str:
    """"Exercise 1.4 (Softmax): test_softmax_matches_torch[case-3]" -> "test_softmax_matches_torch"."""
    name = entry_name.split("): ", 1)[-1].split("::")[-1]
    return re.sub(r"\[.*\]$", "", name)


def points(value: float) -> str:
    """3 -> "3", 2.5 -> "2.5", 1/3 -> "0.33"."""
    return f"{value:.0f}" if abs(value - round(value)) < 1e-6 else f"{value:.2f}".rstrip("0").rstrip(".")


def _fence(text: str) -> str:
    """`text` in a fenced block whose fence no line of the text can close."""
    runs = [len(m) for m in re.findall(r"~{3,}", text)]
    fence = "~" * max([3, *[r + 1 for r in runs]])
    return f"{fence}text\n{text}\n{fence}"


def _clip_lines(text: str, lines: int = MESSAGE_LINES) -> str:
    kept = text.strip().splitlines() or [""]
    return "\n".join(kept[:lines] + ([f"... ({len(kept) - lines} more lines)"] if len(kept) > lines else []))


# ---------------------------------------------------------------- feedback for one student


def feedback_markdown(grade: StudentGrade, exercises: list[Exercise], graded_at: str) -> str:
    """A student's feedback: the total, points per exercise, then each exercise's first failure in plain words."""
    who = ", ".join(f"{p.name} ({p.id})" if p.name != p.id else p.id for p in grade.people)
    lines = [f"# Feedback: {who}", "", f"Graded {graded_at}.", ""]
    if grade.results is None or grade.problem:
        reason = grade.problem or "it was not graded"
        lines += [f"**Your submission could not be graded: {reason}.** It scores 0 points.", "",
                  "Submit your exercise modules (basics.py, mlp.py, conv.py, models.py), directly or in a "
                  "labs/ folder, as files or in a .zip; check them first with `python -m labs grade`.", ""]
        return "\n".join(lines)
    found = outcomes(grade.results, exercises)
    total = sum(o.earned for o in found.values())
    possible = sum(o.possible for o in found.values())
    percent = f" ({100 * total / possible:.0f}%)" if possible else ""
    lines += [f"**Total: {points(total)} / {points(possible)} points{percent}**", ""]
    lines += [f"- {note}" for note in grade.notes] + ([""] if grade.notes else [])
    if any(test_name(t.get("name", "")) == HIDDEN_NAME for t in grade.results.get("tests", [])):
        lines += ["Some tests are hidden: they are graded like the others, and when one fails you see "
                  "only that it failed and what it was worth.", ""]
    lines += ["| exercise | points | |", "|---|---:|---|"]
    for exercise in exercises:
        o = found[exercise.id]
        status = "full marks" if o.possible and o.earned >= o.possible - 1e-9 else \
            ("not attempted" if o.not_attempted else "see below")
        lines.append(f"| {exercise.id} {exercise.title} | {points(o.earned)} / {points(o.possible)} | {status} |")
    lines.append("")
    failing = [(e, found[e.id]) for e in exercises if found[e.id].first_failure and not found[e.id].not_attempted]
    if failing:
        lines += ["## What to fix first", "",
                  "Each exercise's first failing test and what it found. Check an exercise again with "
                  "`python -m labs grade <id>` (for example `python -m labs grade 1.4`).", ""]
    for exercise, o in failing:
        name, message = o.first_failure
        lines += [f"### Exercise {exercise.id}: {exercise.title} ({points(o.earned)} / {points(o.possible)} points)", ""]
        lines += [f"First failure, in `{name}`:" if name != HIDDEN_NAME else "First failure, in a hidden test:", ""]
        lines += [_fence(_clip_lines(message)), ""]
        if o.hidden_failed and name != HIDDEN_NAME:
            lines += [f"Hidden tests: {o.hidden_failed} failed, worth {points(o.hidden_lost)} point(s) in all "
                      "(hidden tests show no details).", ""]
    not_attempted = [e.id for e, o in ((e, found[e.id]) for e in exercises) if o.not_attempted]
    if not_attempted:
        lines += [f"Not attempted yet (the stub still raises NotImplementedError, or its module is missing): "
                  f"{', '.join(not_attempted)}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the gradebook


def possible_points(grades: list[StudentGrade], exercises: list[Exercise]) -> dict[str, float]:
    """Points possible per exercise: what the graded submissions were graded out of."""
    best = {exercise.id: 0.0 for exercise in exercises}
    for grade in grades:
        for exercise_id, o in outcomes(grade.results, exercises).items():
            best[exercise_id] = max(best[exercise_id], o.possible)
    return best


def _cell(text: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (OWASP's advice for CSV files)."""
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not re.fullmatch(r"-[\d.]+", text)) else text


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """A CSV file, atomically: UTF-8 with a byte-order mark, so that Excel reads accented names as they are."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    data = buffer.getvalue().encode("utf-8-sig")
    return write_atomically(path, lambda file: file.write(data))


def write_grades_csv(path: Path, grades: list[StudentGrade], exercises: list[Exercise]) -> None:
    """grades.csv: a row per student, points per exercise and the total; blank where not graded."""
    possible = possible_points(grades, exercises)
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    header += [f"Exercise {e.id} ({points(possible[e.id])} pts)" for e in exercises]
    header += [f"Total ({points(sum(possible.values()))} pts)"]
    rows = []
    for grade in grades:
        found = outcomes(grade.results, exercises)
        graded = grade.results is not None
        scores = [points(found[e.id].earned) if graded else "" for e in exercises]
        total = points(round(sum(o.earned for o in found.values()), 4)) if graded else ""
        for person in grade.people:
            rows.append([_cell(person.name), _cell(person.id), _cell(person.sis_id), _cell(person.login), "", *scores, total])
    write_csv(path, [header, *rows])


# ---------------------------------------------------------------- the class report


def failure_kind(message: str) -> str:
    """A message's first line with its numbers blanked, so that the same mistake groups across students."""
    first = next((line.strip() for line in message.splitlines() if line.strip()), "(no message)")
    first = re.sub(r"(?<![A-Za-z_])[-+]?\d+(\.\d+)?([eE][-+]?\d+)?", "#", first)
    return first[:200]


@dataclass
class FailureGroup:
    exercise: str
    test: str
    kind: str
    example: str
    students: list[str] = field(default_factory=list)


def common_failures(grades: list[StudentGrade], exercises: list[Exercise]) -> list[FailureGroup]:
    """First failures across the class, grouped by exercise, test and message kind, most frequent first."""
    groups: dict[tuple[str, str, str], FailureGroup] = {}
    for grade in grades:
        if grade.results is None:
            continue
        for exercise_id, o in outcomes(grade.results, exercises).items():
            if o.first_failure is None or o.not_attempted:
                continue
            name, message = o.first_failure
            key = (exercise_id, name, failure_kind(message))
            group = groups.setdefault(key, FailureGroup(exercise_id, name, key[2], message))
            group.students.append(grade.key)
    order = {e.id: i for i, e in enumerate(exercises)}
    return sorted(groups.values(), key=lambda g: (-len(g.students), order[g.exercise], g.test))


def write_report(out: Path, grades: list[StudentGrade], exercises: list[Exercise], header: list[str]) -> Path:
    """report.md and its plots (plots/*.png) in `out`; returns the report's path."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    possible = possible_points(grades, exercises)
    max_total = sum(possible.values())
    graded = [g for g in grades if g.results is not None]
    per_student = {g.key: outcomes(g.results, exercises) for g in graded}
    totals = [sum(o.earned for o in per_student[g.key].values()) for g in graded]

    lines = ["# Class report", "", *header, ""]
    if totals:
        mean, median = statistics.fmean(totals), statistics.median(totals)
        lines += [f"Total score: mean {points(round(mean, 2))} / {points(max_total)}"
                  f" ({100 * mean / max_total:.0f}%), median {points(round(median, 2))}, "
                  f"from {points(min(totals))} to {points(max(totals))}." if max_total else "No points possible.", ""]
    _plot_totals(plots / "totals.png", totals, max_total)
    lines += ["![Distribution of total scores](plots/totals.png)", ""]

    attention = []
    for grade in grades:
        if grade.problem:
            attention.append(f"- **{grade.label}** ({grade.key}): could not be graded, 0 points: {grade.problem}.")
        elif grade.results is None:
            attention.append(f"- **{grade.label}** ({grade.key}): not graded (an error in the grader; rerun to retry): "
                             + "; ".join(grade.notes))
        elif grade.notes:
            attention.append(f"- **{grade.label}** ({grade.key}): " + "; ".join(grade.notes) + ".")
    lines += ["## Submissions that need a look", ""]
    lines += attention or ["None: every submission was found and graded."]
    lines += [""]

    lines += ["## Per exercise", "",
              "| exercise | points | mean | median | full marks | 0 points | not attempted |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for exercise in exercises:
        scores = [per_student[g.key][exercise.id].earned for g in graded]
        full = sum(1 for g in graded if possible[exercise.id] and per_student[g.key][exercise.id].earned >= possible[exercise.id] - 1e-9)
        zero = sum(1 for s in scores if s == 0)
        skipped = sum(1 for g in graded if per_student[g.key][exercise.id].not_attempted)
        mean = points(round(statistics.fmean(scores), 2)) if scores else "-"
        median = points(round(statistics.median(scores), 2)) if scores else "-"
        lines.append(f"| {exercise.id} {exercise.title} | {points(possible[exercise.id])} | {mean} | {median} | {full} | {zero} | {skipped} |")
    lines += ["", f"Out of {len(graded)} graded submission(s). \"Not attempted\": 0 points and the stub's "
              "NotImplementedError (or a missing module) in the messages.", ""]
    _plot_exercises(plots / "exercises.png", exercises, graded, per_student, possible)
    lines += ["![Scores per exercise: every student a dot, the mean a bar](plots/exercises.png)", ""]

    lines += ["## Most common first failures", "",
              "Each student's first failing test in each exercise they attempted, grouped by test and message "
              "(numbers blanked out), most frequent first: what to re-explain.", ""]
    groups = common_failures(grades, exercises)
    titles = {e.id: e.title for e in exercises}
    if not groups:
        lines += ["None.", ""]
    for group in groups[:30]:
        who = ", ".join(group.students[:8]) + (f" and {len(group.students) - 8} more" if len(group.students) > 8 else "")
        test = "a hidden test" if group.test == HIDDEN_NAME else f"`{group.test}`"
        lines += [f"### {len(group.students)} student(s): exercise {group.exercise} ({titles[group.exercise]}), {test}", "",
                  f"Students: {who}", "", _fence(_clip_lines(group.example, 6)), ""]
    if len(groups) > 30:
        lines += [f"... and {len(groups) - 30} rarer group(s).", ""]
    _plot_failures(plots / "failures.png", groups[:12])
    lines += ["![The most common first failures](plots/failures.png)", ""]
    return write_text_atomically(out / "report.md", "\n".join(lines))


def _plot_totals(path: Path, totals: list[float], max_total: float) -> None:
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    if totals:
        bins = np.linspace(0, max(max_total, max(totals), 1), 21)
        ax.hist(totals, bins=bins, color="tab:blue", edgecolor="white")
        mean = statistics.fmean(totals)
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.1f}")
        ax.legend()
    ax.set_title(f"Total scores ({len(totals)} submissions; one that could not be graded counts 0)")
    ax.set_xlabel(f"points (out of {points(max_total)})")
    ax.set_ylabel("students")
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _plot_exercises(path: Path, exercises: list[Exercise], graded: list[StudentGrade],
                    per_student: dict[str, dict[str, ExerciseOutcome]], possible: dict[str, float]) -> None:
    fig = Figure(figsize=(max(6, 0.45 * len(exercises) + 2), 4))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # the jitter only spreads the dots; it is the same on every run
    for i, exercise in enumerate(exercises):
        scale = possible[exercise.id] or 1.0
        fractions = np.array([100 * per_student[g.key][exercise.id].earned / scale for g in graded])
        if fractions.size:
            ax.bar(i, fractions.mean(), color="tab:blue", alpha=0.35, width=0.8)
            ax.scatter(i + rng.uniform(-0.25, 0.25, fractions.size), fractions, s=10, color="tab:blue", zorder=3)
    ax.set_xticks(range(len(exercises)), [e.id for e in exercises], rotation=90 if len(exercises) > 12 else 0)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("exercise")
    ax.set_ylabel("points earned (% of the exercise's)")
    ax.set_title("Scores per exercise (dots: students; bars: the mean)")
    fig.savefig(path, dpi=110, bbox_inches="tight")


def _plot_failures(path: Path, groups: list[FailureGroup]) -> None:
    fig = Figure(figsize=(8, 0.4 * max(len(groups), 2) + 1.2))
    ax = fig.subplots()
    labels = [f"{g.exercise} {'hidden test' if g.test == HIDDEN_NAME else g.test}" for g in groups]
    labels = [label if len(label) <= 60 else label[:57] + "..." for label in labels]
    ax.barh(range(len(groups)), [len(g.students) for g in groups], color="tab:red")
    ax.set_yticks(range(len(groups)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("students whose first failure this was")
    ax.set_title("Most common first failures" if groups else "No failures to group")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
