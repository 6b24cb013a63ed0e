"""Late work: due dates and extensions read, lateness measured or flagged, policies applied and explained."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from labs.instructor.late_work import (
    LatePolicy,
    Lateness,
    LateWorkError,
    apply,
    canvas_lateness,
    gradescope_lateness,
    gradescope_times,
    late_column,
    load_gradescope_metadata,
    parse_due,
    read_extensions,
)

UTC = dt.timezone.utc
PST = dt.timezone(dt.timedelta(hours=-8))
DUE = dt.datetime(2026, 12, 15, 23, 59, tzinfo=UTC)


def after(**delta) -> dt.datetime:
    return DUE + dt.timedelta(**delta)


# ---------------------------------------------------------------- due dates


def test_a_time_without_offset_is_utc_unless_a_timezone_is_given():
    assert parse_due("2026-12-15T23:59") == DUE
    paris = parse_due("2026-12-15T23:59", "Europe/Paris")
    assert paris.utcoffset() == dt.timedelta(hours=1)  # CET in December
    assert paris == DUE - dt.timedelta(hours=1)
    assert parse_due("2026-07-15T23:59", "Europe/Paris").utcoffset() == dt.timedelta(hours=2)  # summer time


@pytest.mark.parametrize("text, expected", [
    ("2026-12-15T23:59+01:00", dt.datetime(2026, 12, 15, 22, 59, tzinfo=UTC)),
    ("2026-12-15T23:59Z", DUE),
    ("2026-12-15 23:59", DUE),
    ("2026-12-15T23:59:30", DUE + dt.timedelta(seconds=30)),
    ("2026-12-15T15:59:00.000000-08:00", DUE),  # Gradescope's JSON
    ("2026-12-15 15:59:00.123456789 -0800", DUE + dt.timedelta(microseconds=123456)),  # Ruby's YAML, nanoseconds cut
    ("  2026-12-15T23:59  ", DUE),
])
def test_due_dates_with_offsets_and_fractions(text, expected):
    assert parse_due(text) == expected


def test_a_date_alone_is_the_end_of_that_day():
    assert parse_due("2026-12-15") == dt.datetime(2026, 12, 15, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("text, says", [
    ("15/12/2026 23:59", "expected a date and time such as 2026-12-15T23:59"),
    ("tomorrow", "expected a date and time"),
    ("2026-02-30T12:00", "is not a valid date"),
    ("2026-12-15T25:00", "is not a valid date"),
    ("2026-12-15T23:59+25:00", "impossible UTC offset"),
])
def test_bad_due_dates_say_what_was_expected(text, says):
    with pytest.raises(LateWorkError, match=says):
        parse_due(text)


def test_an_unknown_timezone_names_what_to_type():
    with pytest.raises(LateWorkError, match="IANA name such as Europe/Paris"):
        parse_due("2026-12-15T23:59", "Mars/Olympus")


# ---------------------------------------------------------------- extensions


def test_extensions_with_a_header_a_reason_column_comments_and_a_bom(tmp_path):
    path = tmp_path / "extensions.csv"
    path.write_text("\ufeffstudent_id,new_due,reason\n# medical\n1815,2026-12-18T23:59,flu\n\n42,2026-12-17T12:00+01:00\n",
                    encoding="utf-8")
    assert read_extensions(path) == {"1815": dt.datetime(2026, 12, 18, 23, 59, tzinfo=UTC),
                                     "42": dt.datetime(2026, 12, 17, 11, 0, tzinfo=UTC)}


def test_extensions_without_a_header_and_with_semicolons_as_excel_writes_them(tmp_path):
    path = tmp_path / "extensions.csv"
    path.write_text("1815;2026-12-18T23:59\n42;2026-12-17\n", encoding="utf-8")
    found = read_extensions(path, tz="Europe/Paris")
    assert found["1815"] == dt.datetime(2026, 12, 18, 22, 59, tzinfo=UTC)
    assert found["42"] == dt.datetime(2026, 12, 17, 22, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize("text, says", [
    ("id,due\n1815,2026-12-18T23:59\n42,next monday\n", r"line 3: expected a date and time"),
    ("1815,2026-12-18T23:59\n42\n", r"line 2: expected a student ID and a new due date \(for example 1815,2026-12-18T23:59\)"),
    ("1815,2026-12-18T23:59\n,2026-12-19T23:59\n", r"line 2: expected a student ID"),
    ("1815,2026-12-18T23:59\n7,2026-12-18\n1815,2026-12-20T23:59\n", r"line 3: student 1815 already has .* on line 1"),
])
def test_bad_extension_lines_are_named(tmp_path, text, says):
    path = tmp_path / "extensions.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LateWorkError, match=says):
        read_extensions(path)


def test_a_repeated_identical_extension_is_accepted(tmp_path):
    path = tmp_path / "extensions.csv"
    path.write_text("1815,2026-12-18T23:59\n1815,2026-12-18T23:59:00Z\n", encoding="utf-8")
    assert list(read_extensions(path)) == ["1815"]


def test_a_missing_extensions_file_says_which(tmp_path):
    with pytest.raises(LateWorkError, match="cannot read the extensions file .*nowhere.csv"):
        read_extensions(tmp_path / "nowhere.csv")


# ---------------------------------------------------------------- lateness


def test_on_time_and_exactly_at_the_deadline_are_not_late():
    early = Lateness.from_times(after(minutes=-5), DUE)
    assert (early.days, early.flagged, late_column(early)) == (0.0, False, "")
    at = Lateness.from_times(DUE, DUE)
    assert not at.flagged and at.days == 0 and late_column(at) == ""


def test_lateness_in_days_and_the_late_column_counts_every_day_begun():
    one_minute = Lateness.from_times(after(minutes=1), DUE)
    assert one_minute.flagged and one_minute.days == pytest.approx(1 / 1440)
    assert late_column(one_minute) == "1"
    assert late_column(Lateness.from_times(after(days=1), DUE)) == "1"  # 24 h exactly: one day
    assert late_column(Lateness.from_times(after(days=1, minutes=1), DUE)) == "2"
    assert "submitted 2026-12-16 00:00 UTC, due 2026-12-15 23:59 UTC" == one_minute.source


def test_an_extension_replaces_the_due_date():
    late = Lateness.from_times(after(days=2), DUE, extension=after(days=3))
    assert not late.flagged and "extended to 2026-12-18 23:59 UTC" in late.source
    assert Lateness.from_times(after(days=4), DUE, extension=after(days=3)).whole_days == 1


def test_lateness_compares_instants_across_timezones():
    submitted = parse_due("2026-12-15T23:30-08:00")  # 07:30 UTC the next day
    assert Lateness.from_times(submitted, DUE).days == pytest.approx((7.5 * 60 + 1) / 1440)


def test_naive_times_are_refused():
    with pytest.raises(LateWorkError, match="timezone-aware"):
        Lateness.from_times(dt.datetime(2026, 12, 16), DUE)


def test_no_due_date_means_on_time():
    assert not Lateness.from_times(after(days=9), None).flagged


def test_canvas_late_flag_knows_late_but_not_how_late():
    late = canvas_lateness("lovelaceada_LATE_123456_789012_mlp.py")
    assert late == Lateness(None, True, "Canvas: _LATE in the file name")
    assert late_column(late) == "yes" and late.whole_days is None
    assert not canvas_lateness("lovelaceada_123456_789012_mlp.py").flagged
    assert not canvas_lateness("late_notes.txt").flagged


# ---------------------------------------------------------------- policies


@pytest.mark.parametrize("text, policy", [
    ("none", LatePolicy("none")),
    ("ZERO", LatePolicy("zero")),
    ("10%/day", LatePolicy("per_day", 10.0)),
    ("10%/day,max=50%", LatePolicy("per_day", 10.0, 50.0)),
    (" 12.5 %/day , max = 40% ", LatePolicy("per_day", 12.5, 40.0)),
    ("5%/d,grace=15min", LatePolicy("per_day", 5.0, 100.0, dt.timedelta(minutes=15))),
    ("5%/day,max=30%,grace=2h", LatePolicy("per_day", 5.0, 30.0, dt.timedelta(hours=2))),
])
def test_policies_parse(text, policy):
    assert LatePolicy.parse(text) == policy
    assert LatePolicy.parse(str(policy)) == policy  # and print back as they are typed


@pytest.mark.parametrize("text, says", [
    ("10%", "expected none, zero, or a deduction per day such as 10%/day"),
    ("10/day", "expected none, zero"),
    ("half", "expected none, zero"),
    ("10%/week", "expected none, zero"),
    ("10%/day,cap=50%", "cannot read 'cap=50%'"),
    ("10%/day,max=150%", "max= must be between 0% and 100%"),
    ("0%/day", "between 0% and 100%"),
    ("10%/day,max=50%,max=40%", "max= is given twice"),
    ("10%/day,grace=soon", "cannot read 'grace=soon'"),
])
def test_bad_policies_say_what_was_expected(text, says):
    with pytest.raises(LateWorkError, match=says.replace("(", r"\(")):
        LatePolicy.parse(text)


def test_on_time_work_is_untouched_by_any_policy():
    for policy in ("none", "zero", "10%/day"):
        assert apply(LatePolicy.parse(policy), 45, 60, Lateness.from_times(DUE, DUE)) == (45, "")


def test_ten_percent_a_day_of_the_points_possible():
    policy = LatePolicy.parse("10%/day,max=50%")
    total, why = apply(policy, 45, 60, Lateness.from_times(after(hours=30), DUE))  # 1 day 6 h: 2 days begun
    assert total == pytest.approx(45 - 0.2 * 60)  # 33: 20% of the 60 points possible, not of the 45 earned
    assert why == "late 1 day 6 h, counted as 2 days: -20% of 60 points = -12 (late policy 10%/day,max=50%)"


def test_one_minute_late_is_a_whole_day():
    total, why = apply(LatePolicy.parse("10%/day"), 60, 60, Lateness.from_times(after(minutes=1), DUE))
    assert total == 54 and why.startswith("late 1 min, counted as 1 day: -10%")


def test_the_cap_and_the_floor():
    policy = LatePolicy.parse("10%/day,max=50%")
    total, why = apply(policy, 50, 60, Lateness.from_times(after(days=9), DUE))
    assert total == 20 and "-50% (the maximum) of 60 points = -30" in why
    total, why = apply(LatePolicy.parse("25%/day"), 10, 60, Lateness.from_times(after(days=3), DUE))
    assert total == 0 and "-75% of 60 points = -10" in why  # never below 0: the deduction shown is what was taken


def test_grace_forgives_an_upload_that_took_a_while_and_nothing_more():
    policy = LatePolicy.parse("10%/day,grace=15min")
    assert apply(policy, 50, 60, Lateness.from_times(after(minutes=10), DUE)) == (
        50, "late 10 min, within the grace of 15 min: nothing deducted (late policy 10%/day,grace=15min)")
    total, why = apply(policy, 50, 60, Lateness.from_times(after(days=1, minutes=20), DUE))
    assert total == 38 and "counted as 2 days" in why  # beyond the grace, counted from the due date


def test_zero_and_none():
    late = Lateness.from_times(after(hours=3), DUE)
    assert apply(LatePolicy.parse("zero"), 50, 60, late) == (0.0, "late 3 h: 0 points (late policy: zero)")
    assert apply(LatePolicy.parse("none"), 50, 60, late) == (50, "late 3 h: nothing deducted (late policy: none)")


def test_a_flag_without_days_deducts_nothing_per_day_but_zero_still_applies():
    flagged = canvas_lateness("lovelaceada_LATE_1_2_mlp.py")
    total, why = apply(LatePolicy.parse("10%/day"), 50, 60, flagged)
    assert total == 50
    assert why == ("late (Canvas: _LATE in the file name), by how much unknown: nothing deducted; check the "
                   "submission time and deduct by hand (late policy 10%/day)")
    assert apply(LatePolicy.parse("zero"), 50, 60, flagged)[0] == 0


# ---------------------------------------------------------------- Gradescope

# One entry of "Export Submissions" / submission_metadata.yml: Ruby symbols as keys, as the
# submissions reader parses it (:submitters: with :name:, :sid:, :email:), with its :created_at:.
EXPORT_YML = """\
submission_123456:
  :submitters:
  - :name: Ada Lovelace
    :sid: '1815'
    :email: ada@example.org
  - :name: Charles Babbage
    :sid: '1791'
    :email: charles@example.org
  :created_at: 2026-12-16 10:30:00.123456789 -08:00
  :score: 42.0
submission_123457:
  :submitters:
  - :name: Grace Hopper
    :sid: '1906'
    :email: grace@example.org
  :created_at: 2026-12-14 09:00:00.000000000 -08:00
  :score: 60.0
"""

# The autograder's /autograder/submission_metadata.json, in the shape Gradescope documents.
AUTOGRADER_JSON = {
    "id": 123456,
    "created_at": "2026-12-16T10:30:00.365935-08:00",
    "assignment": {
        "due_date": "2026-12-15T23:59:00.000000-08:00",
        "group_size": 2,
        "group_submission": True,
        "id": 25828,
        "course_id": 1234,
        "late_due_date": "2026-12-18T23:59:00.000000-08:00",
        "release_date": "2026-12-01T00:00:00.000000-08:00",
        "title": "Lab 2: convolutions",
        "total_points": "60.0",
    },
    "submission_method": "upload",
    "users": [
        {"email": "ada@example.org", "id": 1234, "name": "Ada Lovelace"},
        {"email": "charles@example.org", "id": 1235, "name": "Charles Babbage"},
    ],
    "previous_submissions": [],
}


def test_the_autograders_metadata_gives_all_three_times(tmp_path):
    path = tmp_path / "submission_metadata.json"
    path.write_text(json.dumps(AUTOGRADER_JSON), encoding="utf-8")
    submitted, due, late_due = gradescope_times(load_gradescope_metadata(path))
    assert submitted == dt.datetime(2026, 12, 16, 10, 30, 0, 365935, tzinfo=PST)
    assert due == dt.datetime(2026, 12, 15, 23, 59, tzinfo=PST)
    assert late_due == dt.datetime(2026, 12, 18, 23, 59, tzinfo=PST)
    late = gradescope_lateness(AUTOGRADER_JSON)
    assert late.flagged and late_column(late) == "1" and late.days == pytest.approx((10.5 * 60 + 1) / 1440, abs=1e-5)


def test_a_users_own_due_date_is_an_extension(tmp_path):
    metadata = json.loads(json.dumps(AUTOGRADER_JSON))
    metadata["users"][1]["assignment"] = {"due_date": "2026-12-17T23:59:00.000000-08:00", "late_due_date": None}
    submitted, due, _ = gradescope_times(metadata)
    assert due == dt.datetime(2026, 12, 17, 23, 59, tzinfo=PST)  # the group's most generous
    assert not gradescope_lateness(metadata).flagged


def test_the_exports_yaml_is_read_with_a_yaml_parser(tmp_path):
    path = tmp_path / "submission_metadata.yml"
    path.write_text(EXPORT_YML, encoding="utf-8")
    metadata = load_gradescope_metadata(path)
    assert [s[":sid"] for s in metadata["submission_123456"][":submitters"]] == ["1815", "1791"]
    submitted, due, late_due = gradescope_times(metadata["submission_123456"])
    assert submitted == dt.datetime(2026, 12, 16, 10, 30, 0, 123456, tzinfo=PST)
    assert (due, late_due) == (None, None)  # the export has no due dates: give --due
    late = gradescope_lateness(metadata["submission_123456"], extension=parse_due("2026-12-15T23:59-08:00"))
    assert late.flagged and late.whole_days == 1
    assert not gradescope_lateness(metadata["submission_123457"], extension=parse_due("2026-12-15T23:59-08:00")).flagged


def test_after_the_late_due_date_is_said(tmp_path):
    metadata = dict(AUTOGRADER_JSON, created_at="2026-12-19T08:00:00-08:00")
    assert "after the late due date 2026-12-18 23:59" in gradescope_lateness(metadata).source


def test_yaml_that_would_build_objects_is_refused(tmp_path):
    path = tmp_path / "submission_metadata.yml"
    path.write_text("submission_1: !!python/object/apply:os.system ['echo owned']\n", encoding="utf-8")
    with pytest.raises(LateWorkError, match="cannot read Gradescope's metadata"):
        load_gradescope_metadata(path)


def test_metadata_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "submission_metadata.yml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(LateWorkError, match="expected Gradescope's metadata, a mapping, got list"):
        load_gradescope_metadata(path)


def test_a_bad_time_in_the_metadata_names_its_field():
    with pytest.raises(LateWorkError, match="assignment.due_date: expected a date and time"):
        gradescope_times({"created_at": "2026-12-16T10:30:00Z", "assignment": {"due_date": "soon"}})
