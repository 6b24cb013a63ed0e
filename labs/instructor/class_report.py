"""What a class's grading leaves for people to read: feedback, the gradebook, the class report.

Everything here is computed from the results.json files that grading wrote (Gradescope's shape:
one entry per test with its exercise id, points, status and plain-words message), so a resumed
run reports on every student, graded now or earlier. Hidden tests reach these files only as
"hidden test" and "a hidden test failed (worth N points; ...)": nothing here can leak them.

- `feedback_markdown`: for one student, the points of each exercise and its first failure.
- `write_grades_csv`: one row per student (a group's members get a row each), a column per
  exercise, Late, and the total (points given by hand, then the late policy, applied:
  `gradebook_total`). The first columns are those Canvas's gradebook import matches on
  (Student, ID, SIS User ID, SIS Login ID, Section); Moodle's CSV import maps any column to
  its ID field. UTF-8 with a byte-order mark, so that Excel reads accented names as they are.
  (The files each platform imports as they are, gradebook-canvas.csv and gradebook-moodle.csv,
  are lms_export.py's.)
- `write_report`: for the instructor, the submissions that need a look, per exercise the
  distribution of scores and the mean, and the most common first failures across the class,
  grouped by test and message, with how many students hit each: next week's re-explanations.
- `read_overrides` / `match_overrides`: points given by hand (`grade-class --overrides FILE`).
  results.json stays as the grader wrote it; the overrides are applied when the gradebook, the
  report and the feedback are written, and feedback.md gives the reason.

Text from a submission is inert wherever it lands. Names, ids, folder and archive member names
and failure messages are the student's to choose (`../<img src=x onerror=alert(1)>`, a name
`Eve;=1+2;@SUM(40+2)`, an ANSI escape that clears the terminal). So: control characters are
stripped from everything written to markdown or a terminal (`plain`); inline text is escaped
for markdown and HTML (`md_text`: a report viewer that renders HTML runs none of it, a name
cannot open a link, a table cell or emphasis); messages go into fenced blocks that no line of
theirs can close (`_fence`); and a CSV cell cannot start a formula in any spreadsheet, under any
locale's separator (`_cell`, on lms_export.safe_cell, the one neutraliser of every CSV written).
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
from labs.grader.text import printable
from labs.instructor.lms_export import safe_cell
from labs.instructor.submissions import Person
from labs.provided.atomic import write_atomically, write_text_atomically

HIDDEN_NAME = "hidden test"
MESSAGE_LINES = 12  # lines of a failure message kept in feedback and in the report
TOTAL = "total"  # the `exercise` of an override that sets a submission's total


# ---------------------------------------------------------------- text from a submission, made inert

# ANSI/VT100 sequences as a whole (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ESC \`, two-character
# `ESC x`), so that `\x1b[2J` leaves nothing behind; then every other C0/C1 control character
# (carriage return, backspace, bell, DEL) and the bidirectional overrides that can make a line
# read as something else ("Trojan Source", Boucher & Anderson 2021).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")
_LINE_START = re.compile(r"^(\s*)([-=>]|\d+(?=[.)]))")


def md_text(text: object) -> str:
    """`text` as one line of literal markdown: no HTML, link, image, emphasis, code, heading or table cell can start in it.

    `<`, `>`, `&` become HTML entities (so `<img src=x onerror=...>` is shown, never run, also by a
    viewer that renders raw HTML); markdown's punctuation is backslash-escaped, which CommonMark
    allows before any ASCII punctuation; a list or quote marker at the start is escaped too.
    """
    text = printable(text, newlines=False)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _LINE_START.sub(lambda m: m[1] + "\\" + m[2] if not m[2].isdigit() else m[1] + m[2] + "\\", text, count=1)


def code_span(text: object) -> str:
    """`text` as an inline code span (literal in markdown), with a fence of backticks that it cannot close."""
    text = printable(text, newlines=False).replace("|", "\\|")  # a GFM table splits on | even inside code
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text  # CommonMark strips one space each side
    return f"{fence}{padded}{fence}"


def _fence(text: str) -> str:
    """`text` in a fenced block whose fence no line of the text can close (tildes; backticks cannot close it)."""
    text = printable(text)
    runs = [len(m) for m in re.findall(r"~{3,}", text)]
    fence = "~" * max([3, *[r + 1 for r in runs]])
    return f"{fence}text\n{text}\n{fence}"


def _clip_lines(text: str, lines: int = MESSAGE_LINES) -> str:
    kept = printable(text).strip().splitlines() or [""]
    return "\n".join(kept[:lines] + ([f"... ({len(kept) - lines} more lines)"] if len(kept) > lines else []))


def _cell(text: str) -> str:
    """A text cell of grades.csv that no spreadsheet runs as a formula, under any locale's separator.

    lms_export.safe_cell (the one neutraliser of every CSV writer: a leading apostrophe on the cell
    and after every `,` `;` `|` that a formula character follows, so `Eve;=1+2;@SUM(40+2)` is inert
    in a spreadsheet that splits on semicolons too), after the control characters are gone and tabs
    and line breaks have become spaces, so that a row stays one line.
    """
    return safe_cell(re.sub(r"[\t\n]", " ", printable(text)))


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


@dataclass(frozen=True)
class Override:
    """Points given by hand: a row of the overrides file."""

    student: str  # as written in the file: a key (the folder under students/) or a student's ID
    exercise: str  # an exercise id, or TOTAL
    points: float  # the exercise's points (or the total) instead of what was graded
    reason: str  # shown to the student in feedback.md
    line: int  # in the file, for error messages


@dataclass
class StudentGrade:
    """One submission's grading, as the report and the gradebook need it."""

    key: str
    label: str
    people: list[Person]
    results: dict | None  # results.json; None when not graded (an error in the grader, or not reached)
    notes: list[str] = field(default_factory=list)  # what the instructor should know (skipped files, missing modules)
    problem: str = ""  # why it could not be graded at all (0 points)
    graded_at: str = ""  # when results.json was written, as feedback.md says it
    overrides: list[Override] = field(default_factory=list)  # points given by hand, applied over results.json
    late: str = ""  # grades.csv's Late cell: "" on time or unknown, the days late ("2"), or "yes" (a flag only)
    late_note: str = ""  # what the late policy made of it, in words ("" when on time)
    late_total: float | None = None  # the total after the late policy; None when it changed nothing to say

    @property
    def score(self) -> float:
        """The total as graded (results.json), before any override."""
        return float(self.results.get("score", 0.0)) if self.results else 0.0


def outcomes(results: dict | None, exercises: list[Exercise]) -> dict[str, ExerciseOutcome]:
    """Points and first failure per exercise, from the entries of results.json.

    An entry is an exercise's public tests or its hidden tests (report.py, `gradescope()`); its
    `extra_data` says which, its first failure and what its failed tests were worth. Entries
    without it (one per test, as results.json had before) are read as a test each.
    """
    found = {exercise.id: ExerciseOutcome(exercise.id) for exercise in exercises}
    failed: dict[str, list[tuple[str, str]]] = {}
    for entry in (results or {}).get("tests", []):
        outcome = found.get(str(entry.get("number")))
        if outcome is None:
            continue
        outcome.earned += float(entry.get("score", 0.0))
        outcome.possible += float(entry.get("max_score", 0.0))
        if entry.get("status") == "passed":
            continue
        extra = entry.get("extra_data") if isinstance(entry.get("extra_data"), dict) else {}
        first = extra.get("first_failure") if isinstance(extra.get("first_failure"), dict) else None
        name = str(first.get("test", "")) if first else test_name(str(entry.get("name", "")))
        if _is_hidden(entry):
            name = HIDDEN_NAME
            outcome.hidden_failed += int(extra.get("failed", 1))
            outcome.hidden_lost += float(extra.get("failed_points", entry.get("max_score", 0.0)))
        failed.setdefault(outcome.id, []).append((name, str(first.get("message", "")) if first else str(entry.get("output", ""))))
    for exercise_id, failures in failed.items():
        outcome = found[exercise_id]
        public = [f for f in failures if f[0] != HIDDEN_NAME]
        outcome.first_failure = (public or failures)[0]
        outcome.not_attempted = outcome.earned == 0 and any(
            f"NotImplementedError: Exercise {exercise_id} " in message or "is missing from the submission" in message
            for _, message in failures
        )
    return found


def final_points(grade: StudentGrade, exercises: list[Exercise]) -> tuple[dict[str, float], float]:
    """({exercise id: points}, total) for the gradebook: as graded, then the overrides applied."""
    earned = {exercise_id: o.earned for exercise_id, o in outcomes(grade.results, exercises).items()}
    total_override = None
    for override in grade.overrides:
        if override.exercise == TOTAL:
            total_override = override.points
        elif override.exercise in earned:
            earned[override.exercise] = override.points
    total = sum(earned.values()) if total_override is None else total_override
    return earned, round(total, 4)


def gradebook_total(grade: StudentGrade, exercises: list[Exercise]) -> float:
    """The total the gradebook shows: as graded, the overrides applied, then the late policy."""
    return grade.late_total if grade.late_total is not None else final_points(grade, exercises)[1]


def _is_hidden(entry: dict) -> bool:
    """A results.json entry of hidden tests (or, in per-test results, a hidden test)."""
    extra = entry.get("extra_data")
    return bool(extra.get("hidden")) if isinstance(extra, dict) and "hidden" in extra else \
        test_name(str(entry.get("name", ""))) == HIDDEN_NAME


def test_name(entry_name: str) -> str:
    """"Exercise 1.4 (Softmax): test_softmax_matches_torch[case-3]" -> "test_softmax_matches_torch"."""
    name = entry_name.split("): ", 1)[-1].split("::")[-1]
    return re.sub(r"\[.*\]$", "", name)


def points(value: float) -> str:
    """3 -> "3", 2.5 -> "2.5", 1/3 -> "0.33"."""
    return f"{value:.0f}" if abs(value - round(value)) < 1e-6 else f"{value:.2f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------- points given by hand

OVERRIDE_COLUMNS = ("student", "exercise", "points", "reason")


class OverrideError(Exception):
    """The overrides file cannot be used as it is: the message names the file, the line and what to change."""


def read_overrides(path: Path) -> list[Override]:
    """The rows of an overrides file: CSV with the header `student,exercise,points,reason`.

    `exercise` is an exercise id (`1.4`: the exercise's points become `points`) or `total` (the
    submission's total becomes `points`, its exercises keep theirs). UTF-8, with or without
    Excel's byte-order mark; a file saved with semicolons (Excel in many locales) is read too,
    and then `2,5` is two and a half points. Blank lines and lines starting with `#` are skipped.

    Raises:
        OverrideError: no such file, another header, a row without a number, a reason or a student.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise OverrideError(f"the overrides file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OverrideError(f"the overrides file {path} cannot be read as UTF-8 text ({error})") from None
    first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[Override] = []
    seen: dict[tuple[str, str], int] = {}
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        where = f"{path}, line {line}"
        if header is None:
            header = [c.strip().lower() for c in cells]
            if sorted(header) != sorted(OVERRIDE_COLUMNS):
                raise OverrideError(f"{where}: the header should be `{','.join(OVERRIDE_COLUMNS)}`, "
                                    f"found `{printable(','.join(cells), newlines=False)}`")
            continue
        if len(cells) != len(header):
            raise OverrideError(f"{where}: {len(cells)} cell(s), expected {len(header)} ({','.join(header)}); "
                                "quote a reason that holds the separator")
        row = {name: cells[i].strip() for i, name in enumerate(header)}
        if not row["student"]:
            raise OverrideError(f"{where}: no student")
        exercise = row["exercise"].lower() if row["exercise"].lower() == TOTAL else row["exercise"]
        if not re.fullmatch(r"\d+\.\d+", exercise) and exercise != TOTAL:
            raise OverrideError(f"{where}: exercise should be an exercise id such as 1.4, or `total`; "
                                f"found {row['exercise']!r}")
        number = row["points"].replace(",", ".") if delimiter == ";" else row["points"]
        try:
            value = float(number)
        except ValueError:
            raise OverrideError(f"{where}: points should be a number, found {row['points']!r}") from None
        if not value >= 0 or value == float("inf"):  # NaN fails >= too
            raise OverrideError(f"{where}: points should be 0 or more, found {row['points']!r}")
        if not row["reason"]:
            raise OverrideError(f"{where}: no reason; the student reads it in feedback.md")
        duplicate = seen.get((row["student"], exercise))
        if duplicate is not None:
            raise OverrideError(f"{where}: {row['student']} {exercise} was already given on line {duplicate}")
        seen[(row["student"], exercise)] = line
        rows.append(Override(row["student"], exercise, value, row["reason"], line))
    if header is None:
        raise OverrideError(f"{path} is empty: it needs at least the header `{','.join(OVERRIDE_COLUMNS)}`")
    return rows


def match_overrides(rows: list[Override], grades: list[StudentGrade], exercises: list[Exercise],
                    source: Path | str = "the overrides file") -> dict[str, list[Override]]:
    """{submission key: its overrides}; the student of a row is a key (students/<key>/) or a student's ID.

    An override of a group member's ID applies to the group's submission (one results.json, one
    row of points for every member).

    Raises:
        OverrideError: a student who is not in the class, an exercise that is not graded, a row that
            repeats another for the same submission, or more points than the exercise is worth.
    """
    by_key = {grade.key: grade for grade in grades}
    by_id: dict[str, set[str]] = {}
    for grade in grades:
        for person in grade.people:
            by_id.setdefault(person.id, set()).add(grade.key)
    graded_ids = {exercise.id for exercise in exercises}
    possible = possible_points(grades, exercises)
    matched: dict[str, list[Override]] = {}
    for row in rows:
        where = f"{source}, line {row.line}"
        keys = {row.student} if row.student in by_key else by_id.get(row.student, set())
        if not keys:
            raise OverrideError(f"{where}: no student {row.student!r} in this class; use the folder name under "
                                "students/ or the ID column of grades.csv")
        if len(keys) > 1:
            raise OverrideError(f"{where}: {row.student!r} has {len(keys)} submissions ({', '.join(sorted(keys))}); "
                                "name the one you mean by its folder under students/")
        key = keys.pop()
        if row.exercise != TOTAL and row.exercise not in graded_ids:
            raise OverrideError(f"{where}: exercise {row.exercise} is not graded in this folder "
                                f"(the exercises are {', '.join(sorted(graded_ids, key=_id_order))})")
        earlier = next((o for o in matched.get(key, []) if o.exercise == row.exercise), None)
        if earlier is not None:
            raise OverrideError(f"{where}: {row.student!r} is the submission {key}, already given {row.exercise} "
                                f"on line {earlier.line}")
        limit = sum(possible.values()) if row.exercise == TOTAL else possible.get(row.exercise, 0.0)
        if limit and row.points > limit + 1e-9:
            what = "the total is" if row.exercise == TOTAL else f"exercise {row.exercise} is"
            raise OverrideError(f"{where}: {points(row.points)} points, but {what} worth {points(limit)}")
        matched.setdefault(key, []).append(row)
    return matched


def overrides_to_json(overrides: list[Override]) -> list[dict]:
    return [{"exercise": o.exercise, "points": o.points, "reason": o.reason, "student": o.student, "line": o.line}
            for o in overrides]


def overrides_from_json(data: object) -> list[Override]:
    """The overrides stored in students/<id>/adjustments.json (what a later run reads back); [] when unreadable."""
    found = []
    for item in (data or {}).get("overrides", []) if isinstance(data, dict) else []:
        try:
            found.append(Override(str(item["student"]), str(item["exercise"]), float(item["points"]),
                                  str(item["reason"]), int(item.get("line", 0))))
        except (KeyError, TypeError, ValueError):
            continue
    return found


def _id_order(exercise_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in exercise_id.split(".") if part.isdigit())


# ---------------------------------------------------------------- feedback for one student


def feedback_markdown(grade: StudentGrade, exercises: list[Exercise], graded_at: str) -> str:
    """A student's feedback: the total, points per exercise, then each exercise's first failure in plain words."""
    who = ", ".join(md_text(f"{p.name} ({p.id})" if p.name != p.id else p.id) for p in grade.people)
    lines = [f"# Feedback: {who}", "", f"Graded {md_text(graded_at)}.", ""]
    by_hand = _overrides_markdown(grade, exercises)
    if grade.results is None or grade.problem:
        reason = md_text(grade.problem or "it was not graded")
        if by_hand:
            _, total = final_points(grade, exercises)
            lines += [f"Your submission could not be graded automatically: {reason}.", "",
                      f"**Total: {points(total)} points, given by hand**", "", *by_hand]
            return "\n".join(lines)
        lines += [f"**Your submission could not be graded: {reason}.** It scores 0 points.", "",
                  "Submit your exercise modules (basics.py, mlp.py, conv.py, models.py), directly or in a "
                  "labs/ folder, as files or in a .zip; check them first with `python -m labs grade`.", ""]
        return "\n".join(lines)
    found = outcomes(grade.results, exercises)
    earned, total = final_points(grade, exercises)
    graded_total = sum(o.earned for o in found.values())
    possible = sum(o.possible for o in found.values())
    shown = gradebook_total(grade, exercises)
    percent = f" ({100 * shown / possible:.0f}%)" if possible else ""
    changed = f" (graded {points(graded_total)}; changed by hand, see below)" if by_hand and abs(total - graded_total) > 1e-9 else ""
    if grade.late_total is not None and abs(grade.late_total - total) > 1e-9:
        changed += f" (before the late policy: {points(total)}; see below)"
    lines += [f"**Total: {points(shown)} / {points(possible)} points{percent}**{changed}", ""]
    if grade.late_note:
        lines += ["## Late submission", "", md_text(grade.late_note[:1].upper() + grade.late_note[1:]) + ".", ""]
    lines += [f"- {md_text(note)}" for note in grade.notes] + ([""] if grade.notes else [])
    if any(_is_hidden(entry) for entry in grade.results.get("tests", [])):
        lines += ["Some tests are hidden: they are graded like the others, and when one fails you see "
                  "only that it failed and what it was worth.", ""]
    overridden = {o.exercise for o in grade.overrides}
    lines += ["| exercise | points | |", "|---|---:|---|"]
    for exercise in exercises:
        o = found[exercise.id]
        value = earned[exercise.id]
        if exercise.id in overridden:
            status = "changed by hand, see below"
        else:
            status = "full marks" if o.possible and o.earned >= o.possible - 1e-9 else \
                ("not attempted" if o.not_attempted else "see below")
        lines.append(f"| {exercise.id} {_title(exercise)} | {points(value)} / {points(o.possible)} | {status} |")
    lines.append("")
    lines += by_hand
    failing = [(e, found[e.id]) for e in exercises if found[e.id].first_failure and not found[e.id].not_attempted]
    if failing:
        lines += ["## What to fix first", "",
                  "Each exercise's first failing test and what it found. Check an exercise again with "
                  "`python -m labs grade <id>` (for example `python -m labs grade 1.4`).", ""]
    for exercise, o in failing:
        name, message = o.first_failure
        lines += [f"### Exercise {exercise.id}: {_title(exercise)} ({points(o.earned)} / {points(o.possible)} points)", ""]
        lines += [f"First failure, in {code_span(name)}:" if name != HIDDEN_NAME else "First failure, in a hidden test:", ""]
        lines += [_fence(_clip_lines(message)), ""]
        if o.hidden_failed and name != HIDDEN_NAME:
            lines += [f"Hidden tests: {o.hidden_failed} failed, worth {points(o.hidden_lost)} point(s) in all "
                      "(hidden tests show no details).", ""]
    not_attempted = [e.id for e, o in ((e, found[e.id]) for e in exercises) if o.not_attempted and e.id not in overridden]
    if not_attempted:
        lines += [f"Not attempted yet (the stub still raises NotImplementedError, or its module is missing): "
                  f"{', '.join(not_attempted)}.", ""]
    return "\n".join(lines)


def _overrides_markdown(grade: StudentGrade, exercises: list[Exercise]) -> list[str]:
    """The section of feedback.md that lists the points given by hand and why."""
    if not grade.overrides:
        return []
    found = outcomes(grade.results, exercises)
    titles = {e.id: e for e in exercises}
    lines = ["## Points changed by hand", ""]
    for override in sorted(grade.overrides, key=lambda o: (o.exercise == TOTAL, _id_order(o.exercise) if o.exercise != TOTAL else ())):
        if override.exercise == TOTAL:
            graded = sum(o.earned for o in found.values())
            what = "Total"
        else:
            graded = found[override.exercise].earned if override.exercise in found else 0.0
            what = f"Exercise {override.exercise}" + (f" ({_title(titles[override.exercise])})" if override.exercise in titles else "")
        was = f" instead of {points(graded)} (graded)" if grade.results is not None and not grade.problem else ""
        lines.append(f"- {what}: {points(override.points)} point(s){was}. {md_text(override.reason)}")
    return lines + [""]


def _title(exercise: Exercise) -> str:
    """An exercise's title in a table cell (the course's own text; only a | could break the table)."""
    return exercise.title.replace("|", "\\|")


# ---------------------------------------------------------------- the gradebook


def possible_points(grades: list[StudentGrade], exercises: list[Exercise]) -> dict[str, float]:
    """Points possible per exercise: what the graded submissions were graded out of."""
    best = {exercise.id: 0.0 for exercise in exercises}
    for grade in grades:
        for exercise_id, o in outcomes(grade.results, exercises).items():
            best[exercise_id] = max(best[exercise_id], o.possible)
    return best


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    """A CSV file, atomically: UTF-8 with a byte-order mark, so that Excel reads accented names as they are."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    data = buffer.getvalue().encode("utf-8-sig")
    return write_atomically(path, lambda file: file.write(data))


def write_grades_csv(path: Path, grades: list[StudentGrade], exercises: list[Exercise]) -> None:
    """grades.csv: a row per student, points per exercise, Late, and the total (overrides, then the late policy, applied).

    Blank where not graded. Late is "" (on time, or not known), the days late ("2"), or "yes"
    (Canvas's _LATE flag, which does not say by how much).
    """
    possible = possible_points(grades, exercises)
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    header += [f"Exercise {e.id} ({points(possible[e.id])} pts)" for e in exercises]
    header += ["Late", f"Total ({points(sum(possible.values()))} pts)"]
    rows = []
    for grade in grades:
        graded = grade.results is not None
        earned, _ = final_points(grade, exercises)
        scores = [points(earned[e.id]) if graded else "" for e in exercises]
        total = points(gradebook_total(grade, exercises)) if graded else ""
        for person in grade.people:
            rows.append([_cell(person.name), _cell(person.id), _cell(person.sis_id), _cell(person.login), "", *scores,
                         _cell(grade.late), total])
    write_csv(path, [header, *rows])


# ---------------------------------------------------------------- the class report


def failure_kind(message: str) -> str:
    """A message's first line with its numbers blanked, so that the same mistake groups across students."""
    first = next((line.strip() for line in printable(message).splitlines() if line.strip()), "(no message)")
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
    """report.md and its plots (plots/*.png) in `out`; returns the report's path.

    `header` is markdown written by the caller: text from a submission in it must be escaped (md_text).
    Scores are the gradebook's (overrides applied); the failures are the grader's.
    """
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    possible = possible_points(grades, exercises)
    max_total = sum(possible.values())
    graded = [g for g in grades if g.results is not None]
    per_student = {g.key: outcomes(g.results, exercises) for g in graded}
    final = {g.key: final_points(g, exercises) for g in graded}
    totals = [gradebook_total(g, exercises) for g in graded]

    lines = ["# Class report", "", *header, ""]
    if totals:
        mean, median = statistics.fmean(totals), statistics.median(totals)
        lines += [f"Total score: mean {points(round(mean, 2))} / {points(max_total)}"
                  f" ({100 * mean / max_total:.0f}%), median {points(round(median, 2))}, "
                  f"from {points(min(totals))} to {points(max(totals))}." if max_total else "No points possible.", ""]
    _plot_totals(plots / "totals.png", totals, max_total, could_not_grade=sum(1 for g in graded if g.problem),
                 left_out=len(grades) - len(graded))
    lines += ["![Distribution of total scores](plots/totals.png)", ""]

    attention = []
    for grade in grades:
        who = f"**{md_text(grade.label)}** ({md_text(grade.key)})"
        if grade.problem:
            attention.append(f"- {who}: could not be graded, 0 points: {md_text(grade.problem)}.")
        elif grade.results is None:
            attention.append(f"- {who}: not graded: " + "; ".join(md_text(n) for n in grade.notes))
        elif grade.notes:
            attention.append(f"- {who}: " + "; ".join(md_text(n) for n in grade.notes) + ".")
    lines += ["## Submissions that need a look", ""]
    lines += attention or ["None: every submission was found and graded."]
    lines += [""]

    by_hand = [(g, o) for g in grades for o in g.overrides]
    if by_hand:
        lines += ["## Points given by hand", "",
                  "From the overrides file; results.json keeps what the grader gave, feedback.md shows the reason.", "",
                  "| submission | exercise | graded | given | reason |", "|---|---|---:|---:|---|"]
        for grade, o in by_hand:
            found = per_student.get(grade.key)
            if found is None:
                was = "-"
            elif o.exercise == TOTAL:
                was = points(sum(x.earned for x in found.values()))
            else:
                was = points(found[o.exercise].earned) if o.exercise in found else "-"
            lines.append(f"| {md_text(grade.key)} | {o.exercise} | {was} | {points(o.points)} | {md_text(o.reason)} |")
        lines += [""]

    late = [g for g in grades if g.late_note]
    if late:
        lines += ["## Late submissions", "", "| submission | late | total | what the policy did |", "|---|---:|---:|---|"]
        for grade in late:
            total = points(gradebook_total(grade, exercises)) if grade.results is not None else "-"
            lines.append(f"| {md_text(grade.key)} | {md_text(grade.late) or '-'} | {total} | {md_text(grade.late_note)} |")
        lines += [""]

    lines += ["## Per exercise", "",
              "| exercise | points | mean | median | full marks | 0 points | not attempted |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for exercise in exercises:
        scores = [final[g.key][0][exercise.id] for g in graded]
        full = sum(1 for s in scores if possible[exercise.id] and s >= possible[exercise.id] - 1e-9)
        zero = sum(1 for s in scores if s == 0)
        skipped = sum(1 for g in graded if per_student[g.key][exercise.id].not_attempted)
        mean = points(round(statistics.fmean(scores), 2)) if scores else "-"
        median = points(round(statistics.median(scores), 2)) if scores else "-"
        lines.append(f"| {exercise.id} {_title(exercise)} | {points(possible[exercise.id])} | {mean} | {median} | {full} | {zero} | {skipped} |")
    lines += ["", f"Out of {len(graded)} graded submission(s). \"Not attempted\": 0 points and the stub's "
              "NotImplementedError (or a missing module) in the messages.", ""]
    _plot_exercises(plots / "exercises.png", exercises, graded, final, possible)
    lines += ["![Scores per exercise: every student a dot, the mean a bar](plots/exercises.png)", ""]

    lines += ["## Most common first failures", "",
              "Each student's first failing test in each exercise they attempted, grouped by test and message "
              "(numbers blanked out), most frequent first: what to re-explain.", ""]
    groups = common_failures(grades, exercises)
    titles = {e.id: e for e in exercises}
    if not groups:
        lines += ["None.", ""]
    for group in groups[:30]:
        who = ", ".join(md_text(s) for s in group.students[:8]) + \
            (f" and {len(group.students) - 8} more" if len(group.students) > 8 else "")
        test = "a hidden test" if group.test == HIDDEN_NAME else code_span(group.test)
        lines += [f"### {len(group.students)} student(s): exercise {group.exercise} ({_title(titles[group.exercise])}), {test}", "",
                  f"Students: {who}", "", _fence(_clip_lines(group.example, 6)), ""]
    if len(groups) > 30:
        lines += [f"... and {len(groups) - 30} rarer group(s).", ""]
    _plot_failures(plots / "failures.png", groups[:12])
    lines += ["![The most common first failures](plots/failures.png)", ""]
    return write_text_atomically(out / "report.md", "\n".join(lines))


def _plot_totals(path: Path, totals: list[float], max_total: float, could_not_grade: int = 0, left_out: int = 0) -> None:
    totals_figure(totals, max_total, could_not_grade, left_out).savefig(path, dpi=110, bbox_inches="tight")


def totals_figure(totals: list[float], max_total: float, could_not_grade: int = 0, left_out: int = 0) -> Figure:
    """The histogram of the gradebook's totals: students on an integer axis, a title that says what it counts.

    `could_not_grade`: how many of `totals` are submissions that could not be graded (a 0 each);
    `left_out`: submissions without results (an error of the grader), which the plot does not show.
    """
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    if totals:
        bins = np.linspace(0, max(max_total, max(totals), 1), 21)
        ax.hist(totals, bins=bins, color="tab:blue", edgecolor="white")
        mean = statistics.fmean(totals)
        ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.1f}")
        ax.legend()
    title = f"Total scores of {len(totals)} submission{'s' if len(totals) != 1 else ''}"
    notes = []
    if could_not_grade:
        notes.append(f"{could_not_grade} could not be graded and count{'s' if could_not_grade == 1 else ''} 0")
    if left_out:
        notes.append(f"{left_out} without results, left out")
    ax.set_title(title + (f" ({'; '.join(notes)})" if notes else ""))
    ax.set_xlabel(f"points (out of {points(max_total)}), as in the gradebook")
    ax.set_ylabel("students")
    ax.yaxis.get_major_locator().set_params(integer=True)  # a count of students: no 0.5 ticks
    return fig


def _plot_exercises(path: Path, exercises: list[Exercise], graded: list[StudentGrade],
                    final: dict[str, tuple[dict[str, float], float]], possible: dict[str, float]) -> None:
    fig = Figure(figsize=(max(6, 0.45 * len(exercises) + 2), 4))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # the jitter only spreads the dots; it is the same on every run
    for i, exercise in enumerate(exercises):
        scale = possible[exercise.id] or 1.0
        fractions = np.array([100 * final[g.key][0][exercise.id] / scale for g in graded])
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
