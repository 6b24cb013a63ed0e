"""Grades as learning platforms import them, beside grades.csv; and the cell neutraliser every CSV writer uses.

- `write_canvas_gradebook`: Canvas's Gradebook import (Grades > Import), in the shape of Canvas's
  own Gradebook export, which its Instructor Guide ("How do I import grades in the Gradebook?")
  tells instructors to start from: the columns `Student, ID, SIS User ID, SIS Login ID, Section`
  and one column per assignment, then a row per student. Canvas matches a student by ID (then
  SIS User ID, SIS Login ID); the name is for people. A column headed `Lab 2 (123456)`, as the
  export names it, updates that assignment; any other header creates a new assignment, so no
  other column (not even a Late one) may be added. The optional second row, `Points Possible`
  in the Student column (Canvas's export writes it indented, `    Points Possible`), gives a new
  assignment its points possible; without it Canvas creates it with 0 points possible.
- `write_moodle_worksheet`: Moodle's assignment "offline grading worksheet" (Assignment > View
  all submissions > Grading action > Download grading worksheet; uploaded back with "Upload
  grading worksheet", the assignfeedback_offline plugin), as Moodle 4.1-4.4 writes it for an
  assignment with file submissions and feedback comments, e-mail being the identity field:
  `Identifier, Full name, Email address, Status, Grade, Maximum grade, Grade can be changed,
  Last modified (submission), Last modified (grade), Feedback comments`. (Moodle adds `Online
  text` only when online text submissions are on: they are not, for this lab.) Moodle matches a
  row by its Identifier, `Participant N`, N being the participant number of Moodle's "Download all
  submissions" folders (`Full Name_N_assignsubmission_file_`), our Person.id; it finds the columns
  by their English headings, and skips a row whose "Last modified (grade)" is older than the
  grade in Moodle unless told to overwrite. UTF-8 with a byte-order mark, which Moodle strips.

Scores are scaled to the platform's points: 45 of 60 autograder points are 7.5 of a 10-point
Canvas assignment. A student who was not graded gets an empty cell: Canvas and Moodle then
leave the grade alone.

CSV injection. A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and, in some,
a tab or a carriage return) as a formula: a student named `=HYPERLINK("http://evil","x")` would
run it in the instructor's Excel. `write_csv`, used by every writer here, therefore:
1. quotes every cell (csv.QUOTE_ALL), so that a separator or a line break inside a name
   cannot start a cell of its own in a reader that honours quotes;
2. prefixes `'` (which spreadsheets take as "this is text", and do not show) to a text cell
   whose first character, once leading whitespace, invisible format characters and quotes are
   skipped, could start a formula: `= + - @`, tab, CR, LF, and their full-width and small forms
   (`＝ ＋ － ＠ ﹦ ﹢ ﹣ ﹫`, and the minus sign `−`), which some locales' spreadsheets read as the
   ASCII ones;
3. does the same after every `,` `;` `|`, tab and line break inside a text cell, because a file
   opened with another separator than it was written with (Excel in a locale whose list
   separator is `;`, a "text import" without a text qualifier, a `cut -d';'`) splits there
   regardless of quotes: `Eve;=1+2;@SUM(40+2)` becomes `Eve;'=1+2;'@SUM(40+2)`, inert in
   every split. Nothing is deleted: the reader still sees what the student typed.
Numbers that the grader itself writes (scores, points) are not text and stay numbers; so do
the few strings it writes itself (Moodle's dates, and its "-" for none).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

FORMULA_STARTS = frozenset("=+-@\t\r\n" "\uff1d\uff0b\uff0d\uff20" "\ufe66\ufe62\ufe63\ufe6b" "\u2212")
SEPARATORS = frozenset(",;|\t\r\n")
QUOTES = frozenset("\"'\u2018\u2019\u201c\u201d\uff02\uff07`")
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
CANVAS_POINTS_POSSIBLE = "    Points Possible"  # as Canvas's own export writes it
MOODLE_COLUMNS = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum grade",
                  "Grade can be changed", "Last modified (submission)", "Last modified (grade)", "Feedback comments"]
MOODLE_PARTICIPANT = "Participant "  # Moodle's string assign/hiddenuser, before the participant number
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


@dataclass(frozen=True)
class Number:
    """A number the grader wrote, kept a number in the CSV (not neutralised): `Number(7.5)`, `Number(85, decimals=2)`."""

    value: float
    decimals: int | None = None  # None: as few as needed (7.5, 10); 2: always two (Moodle's 85.00)

    def __str__(self) -> str:
        if not math.isfinite(self.value):
            raise ValueError(f"a grade must be a finite number, got {self.value}")
        if self.decimals is not None:
            return f"{self.value:.{self.decimals}f}"
        rounded = round(self.value, 4)
        return f"{rounded:.0f}" if rounded == int(rounded) else f"{rounded:.4f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Literal:
    """Text the grader itself writes (Moodle's "-" for "no date"), written as is, not neutralised."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class GradeRow:
    """One student's grade, as the exports need it; `score` None when not graded (an empty cell)."""

    person_id: str  # Canvas's ID, or Moodle's participant number (the number in "Participant N")
    name: str
    sis_id: str = ""
    login: str = ""
    email: str = ""
    section: str = ""
    score: float | None = None  # points earned, after any late policy
    max_score: float = 0.0  # points possible in the grader
    late: str = ""  # grades.csv's Late column: "", "2" (days), "yes" (a flag); neither LMS file has such a column
    status: str = ""  # Moodle's Status cell; "" lets the writer say "Submitted for grading" or "No submission"
    feedback: str = ""  # plain text for Moodle's Feedback comments (a late deduction's explanation)
    submitted_at: dt.datetime | None = None  # Moodle's "Last modified (submission)"


# ---------------------------------------------------------------- neutralising cells


def _skippable(ch: str) -> bool:
    """Whitespace, invisible format characters (zero-width space, BOM, bidi marks) and quotes."""
    return ch.isspace() or unicodedata.category(ch) == "Cf" or ch in QUOTES


def _starts_formula(text: str, start: int) -> bool:
    """Whether text[start:], once skippable characters are passed, begins with a formula character."""
    for ch in text[start:]:
        if ch in FORMULA_STARTS:
            return True
        if not _skippable(ch):
            return False
    return False


def safe_cell(text: object) -> str:
    """`text` as a CSV cell no spreadsheet will run, in any separator or locale (see the module's docstring).

    >>> safe_cell("=1+2"), safe_cell("Ada"), safe_cell("Eve;=1+2;@SUM(40+2)")
    ("'=1+2", 'Ada', "Eve;'=1+2;'@SUM(40+2)")
    """
    text = "" if text is None else str(text)
    out = ["'"] if _starts_formula(text, 0) else []
    for i, ch in enumerate(text):
        out.append(ch)
        if ch in SEPARATORS and _starts_formula(text, i + 1):
            out.append("'")
    return "".join(out)


def _cell(value: object) -> str:
    """A CSV cell: a Number or a Literal as itself, anything else as neutralised text."""
    return str(value) if isinstance(value, (Number, Literal)) else safe_cell(value)


def write_csv(path: Path, header: list[object], rows: list[list[object]]) -> None:
    """A CSV file every cell of which is quoted and neutralised (Numbers and Literals excepted), written atomically.

    UTF-8 with a byte-order mark (Excel then reads accented names right), `\\r\\n` line ends (RFC 4180).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8-sig") as file:
        writer = csv.writer(file, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow([_cell(cell) for cell in header])
        writer.writerows([[_cell(cell) for cell in row] for row in rows])
    temporary.replace(path)


# ---------------------------------------------------------------- Canvas


def _scaled(row: GradeRow, points: float) -> float | None:
    """The row's score on a scale of `points` (45 of 60 is 7.5 of 10); None when not graded."""
    if row.score is None:
        return None
    if row.max_score <= 0:
        return 0.0 if points > 0 else float(row.score)
    return row.score * points / row.max_score


def write_canvas_gradebook(path: Path, rows: list[GradeRow], assignment_name: str, points_possible: float,
                           points_possible_row: bool = True) -> None:
    """Canvas's Gradebook import file: the identity columns, one assignment column, a row per student.

    Args:
        path: where to write (for example OUT/canvas.csv).
        rows: the students.
        assignment_name: the assignment column's header; Canvas's export spelling with its id,
            `Lab 2 (123456)`, to grade an existing assignment.
        points_possible: the assignment's points in Canvas; scores are scaled to it.
        points_possible_row: write Canvas's optional `Points Possible` row (used for a new assignment).

    Raises:
        ValueError: no assignment name, or points possible not positive.
    """
    if not str(assignment_name).strip():
        raise ValueError("write_canvas_gradebook needs the assignment's name as Canvas shows it, e.g. 'Lab 2 (123456)'")
    if not (math.isfinite(points_possible) and points_possible > 0):
        raise ValueError(f"write_canvas_gradebook expected positive points possible, got {points_possible}")
    body: list[list[object]] = []
    if points_possible_row:
        body.append([CANVAS_POINTS_POSSIBLE, "", "", "", "", Number(points_possible)])
    for row in rows:
        score = _scaled(row, points_possible)
        body.append([row.name, row.person_id, row.sis_id, row.login, row.section,
                     "" if score is None else Number(round(score, 2))])
    write_csv(path, [*CANVAS_COLUMNS, assignment_name], body)


# ---------------------------------------------------------------- Moodle


def moodle_time(moment: dt.datetime | None) -> str:
    """Moodle's English date, its `strftimedatetime`: "Wednesday, 2 December 2026, 7:40 AM"; "-" for none.

    Written without the locale's help (strftime's %A would be the machine's language), in the
    moment's own timezone.
    """
    if moment is None:
        return "-"
    hour = moment.hour % 12 or 12
    return (f"{_DAYS[moment.weekday()]}, {moment.day} {_MONTHS[moment.month - 1]} {moment.year}, "
            f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}")


def moodle_identifier(person_id: str) -> str:
    """"1001" -> "Participant 1001"; an identifier already spelled so is kept."""
    text = str(person_id).strip()
    return text if text.startswith(MOODLE_PARTICIPANT) else f"{MOODLE_PARTICIPANT}{text}"


def write_moodle_worksheet(path: Path, rows: list[GradeRow], max_grade: float,
                           graded_at: dt.datetime | None = None) -> None:
    """Moodle's offline grading worksheet for one assignment: a row per participant.

    Args:
        path: where to write (for example OUT/moodle.csv).
        rows: the students; `person_id` is the participant number.
        max_grade: the assignment's maximum grade in Moodle; scores are scaled to it.
        graded_at: "Last modified (grade)" of every graded row (default: now); Moodle keeps a
            grade changed in Moodle after this time unless the upload is told to overwrite.

    Raises:
        ValueError: the maximum grade is not positive, or a participant number is missing.
    """
    if not (math.isfinite(max_grade) and max_grade > 0):
        raise ValueError(f"write_moodle_worksheet expected a positive maximum grade, got {max_grade}")
    graded_at = graded_at or dt.datetime.now().astimezone()
    body: list[list[object]] = []
    for row in rows:
        if not str(row.person_id).strip():
            raise ValueError(f"write_moodle_worksheet: {row.name!r} has no participant number (Moodle's Identifier)")
        grade = _scaled(row, max_grade)
        status = row.status or ("Submitted for grading" if row.score is not None else "No submission")
        body.append([
            moodle_identifier(row.person_id), row.name, row.email, status,
            "" if grade is None else Number(grade, decimals=2), Number(max_grade, decimals=2), "Yes",
            Literal(moodle_time(row.submitted_at)), Literal(moodle_time(graded_at) if grade is not None else "-"),
            html.escape(row.feedback, quote=False),  # Moodle shows feedback comments as HTML
        ])
    write_csv(path, MOODLE_COLUMNS, body)
