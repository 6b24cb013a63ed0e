"""Late work: due dates, extensions, how late a submission was, and what a late policy makes of it.

Times. Every time here is timezone-aware. `parse_due` reads ISO 8601 (`2026-12-15T23:59`,
`2026-12-15 23:59:30`, `2026-12-15T23:59+01:00`, `...Z`, Ruby's `2026-12-15 23:59:00.123 -0800`
as Gradescope writes it). A time written without an offset is in the course's timezone `tz`
(an IANA name such as "Europe/Paris"), and in UTC when none is given, never in the clock of the
machine that grades: a grading server in another zone computes the same lateness. A date alone
(`2026-12-15`) means the end of that day, 23:59:59, as LMSs show "due Dec 15".

Lateness. A submission's lateness is known in one of two ways:
- from its submission time and the due date (an extension, when the student has one, replaces
  the due date): `Lateness.from_times(submitted, due, extension)` gives the days late, fractional;
- from a flag only: Canvas marks a late file by `_LATE` in its name (`lastfirst_LATE_123_456_mlp.py`)
  and says nothing of how late; `Lateness.flag()` records late, days unknown.

Late policies, as `--late-policy` reads them (`LatePolicy.parse`):
- `none`: nothing is deducted; the gradebook's Late column still says who was late;
- `zero`: a late submission scores 0;
- `P%/day` and optionally `,max=M%` and `,grace=G` (G as `15min` or `2h`): P percent of the
  points possible is deducted per day late, in all at most M percent; a submission late by G
  or less loses nothing (an upload that took a while), one later than that is counted from
  the due date as usual. Example: `10%/day,max=50%,grace=15min`.
Days are counted as most LMSs count them (Canvas's late policy among them): every day begun
counts whole, so 1 minute late is 1 day and 24 h 1 min is 2; the percentage is of the points
possible, not of the score (Canvas's rule); a total never goes below 0. A submission whose
days are unknown (a flag only) loses nothing under a per-day policy, and its explanation says
to check it by hand; under `zero` it scores 0 all the same.

Gradescope. `gradescope_times` reads the times Gradescope gives: its autograder metadata
(submission_metadata.json in /autograder, documented at gradescope-autograders.readthedocs.io:
`created_at`, `assignment: {due_date, late_due_date, ...}`, `users: [{name, email, id, ...}]`)
and each entry of the "Export Submissions" file submission_metadata.yml, whose keys are Ruby
symbols (`:created_at:`, `:submitters:`), read with PyYAML's `safe_load` by `load_gradescope_metadata`.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

UTC = dt.timezone.utc
MAX_METADATA_BYTES = 50 * 2**20  # a class's submission_metadata.yml; far beyond any real one
DAY = dt.timedelta(days=1)

_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
    r"\s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?$"
)
_CANVAS_LATE = re.compile(r"^[^_]+_LATE_\d+_\d+_")  # Canvas's "Download submissions": lastfirst_LATE_USERID_SUBMISSIONID_file


class LateWorkError(ValueError):
    """Bad input to the late-work tools: the message says what was expected, and where."""


# ---------------------------------------------------------------- times


def timezone(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    """A tzinfo from an IANA name ("Europe/Paris"), "UTC", a tzinfo, or None (UTC)."""
    if tz is None:
        return UTC
    if isinstance(tz, dt.tzinfo):
        return tz
    if tz.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise LateWorkError(f"unknown timezone {tz!r}: expected an IANA name such as Europe/Paris or America/New_York, or UTC") from None


def parse_due(text: str, tz: str | dt.tzinfo | None = None) -> dt.datetime:
    """A due date or submission time as an aware datetime.

    Args:
        text: ISO 8601, `2026-12-15T23:59`, optionally with seconds, a fraction and an offset
            (`Z`, `+01:00`, `+0100`, ` -07:00`); a date alone means 23:59:59 that day.
        tz: the timezone of a time written without an offset (default UTC).

    Raises:
        LateWorkError: the text is not such a date, or names a day that does not exist.
    """
    cleaned = str(text).strip()
    match = _TIME.match(cleaned)
    if not match:
        raise LateWorkError(f"expected a date and time such as 2026-12-15T23:59 or 2026-12-15T23:59+01:00, got {text!r}")
    try:
        day = dt.date.fromisoformat(match["date"])
        if match["h"] is None:
            hour, minute, second, micro = 23, 59, 59, 0
        else:
            hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
            micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
        moment = dt.datetime(day.year, day.month, day.day, hour, minute, second, micro)
    except ValueError as error:
        raise LateWorkError(f"{text!r} is not a valid date and time ({error})") from None
    offset = match["tz"]
    if offset is None:
        return moment.replace(tzinfo=timezone(tz))
    if offset.upper() in ("Z", "UTC"):
        return moment.replace(tzinfo=UTC)
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise LateWorkError(f"{text!r} has an impossible UTC offset {offset}")
    sign = 1 if offset[0] == "+" else -1
    return moment.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes)))


def _as_time(value, what: str, tz: str | dt.tzinfo | None = None) -> dt.datetime | None:
    """A datetime from what JSON or YAML gave (a string, a datetime, a date, or nothing)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone(tz))
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, 23, 59, 59, tzinfo=timezone(tz))
    try:
        return parse_due(str(value), tz)
    except LateWorkError as error:
        raise LateWorkError(f"{what}: {error}") from None


def read_extensions(path: Path, tz: str | dt.tzinfo | None = None) -> dict[str, dt.datetime]:
    """{student ID: new due date} from a CSV file of two columns, student ID and new due date.

    The ID is the one in grades.csv's ID column. A header row is optional (a first row whose
    second cell is not a date is taken as one); columns after the second (a reason) are
    ignored; blank lines and lines starting with `#` are skipped. Commas, semicolons (Excel in
    many locales) or tabs separate the columns. UTF-8, with or without a byte-order mark.

    Raises:
        LateWorkError: naming the file and line: a missing ID or date, a date that does not
            parse, or one student given two different dates.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise LateWorkError(f"cannot read the extensions file {path}: {error}") from None
    lines = text.splitlines()
    sample = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    delimiter = max((",", ";", "\t"), key=sample.count) if sample else ","
    found: dict[str, dt.datetime] = {}
    where: dict[str, int] = {}
    first = True
    for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if first:
            first = False
            if len(cells) >= 2 and not _TIME.match(cells[1]):
                continue  # a header: "student_id,due"
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise LateWorkError(f"{path}, line {number}: expected a student ID and a new due date "
                                f"(for example 1815,2026-12-18T23:59), got {delimiter.join(row)!r}")
        try:
            due = parse_due(cells[1], tz)
        except LateWorkError as error:
            raise LateWorkError(f"{path}, line {number}: {error}") from None
        student = cells[0]
        if student in found and found[student] != due:
            raise LateWorkError(f"{path}, line {number}: student {student} already has the extension "
                                f"{found[student].isoformat()} on line {where[student]}; keep one line per student")
        found[student], where[student] = due, number
    return found


# ---------------------------------------------------------------- lateness


@dataclass(frozen=True)
class Lateness:
    """How late a submission was: `days` late (None when unknown), whether it is late, and what says so."""

    days: float | None  # 0 on time; fractional (1.5 is a day and a half); None when only a flag is known
    flagged: bool  # late
    source: str  # in words: "submitted 2026-12-16 10:00 UTC, due 2026-12-15 23:59 UTC", "Canvas: _LATE in the file name"

    @classmethod
    def on_time(cls, source: str = "no due date") -> Lateness:
        return cls(0.0, False, source)

    @classmethod
    def flag(cls, source: str) -> Lateness:
        """Late, by how much unknown: what an LMS's flag tells (Canvas's `_LATE`)."""
        return cls(None, True, source)

    @property
    def whole_days(self) -> int | None:
        """The days as LMSs count them: every day begun counts (ceil); None when unknown."""
        return None if self.days is None else math.ceil(self.days - 1e-9)

    @classmethod
    def from_times(cls, submitted: dt.datetime | None, due: dt.datetime | None, extension: dt.datetime | None = None) -> Lateness:
        """How late `submitted` is for `due`, or for `extension` when the student has one.

        Args:
            submitted, due, extension: aware datetimes (naive ones are refused: a wrong timezone
                would make whole classes late).

        Returns:
            A Lateness with days > 0 and flagged when late; on time when there is no due date or no time.
        """
        for name, value in (("submitted", submitted), ("due", due), ("extension", extension)):
            if value is not None and value.tzinfo is None:
                raise LateWorkError(f"lateness expected timezone-aware times, got a naive {name} time {value.isoformat()}; "
                                    "read times with parse_due, which gives them their timezone")
        deadline = extension or due
        if submitted is None or deadline is None:
            return cls.on_time("no submission time" if submitted is None else "no due date")
        which = "extended to" if extension is not None else "due"
        source = f"submitted {_shown(submitted)}, {which} {_shown(deadline)}"
        late = submitted - deadline
        if late <= dt.timedelta(0):
            return cls(0.0, False, source)
        return cls(late / DAY, True, source)


def _shown(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or moment.strftime("%z"))


def canvas_lateness(file_name: str) -> Lateness:
    """Canvas's flag: `lastfirst_LATE_123_456_mlp.py` is late (days unknown); any other name is not known late."""
    if _CANVAS_LATE.match(Path(file_name).name):
        return Lateness.flag("Canvas: _LATE in the file name")
    return Lateness.on_time("Canvas: no _LATE in the file name")


def late_column(lateness: Lateness) -> str:
    """The gradebook's Late cell: "" on time, the whole days late ("2"), or "yes" when only a flag is known."""
    if not lateness.flagged:
        return ""
    return "yes" if lateness.whole_days is None else str(max(1, lateness.whole_days))


# ---------------------------------------------------------------- policies

_POLICY_HELP = ("expected none, zero, or a deduction per day such as 10%/day, 10%/day,max=50% "
                "or 10%/day,max=50%,grace=15min")
_PERCENT = r"(\d+(?:\.\d+)?)\s*%"


@dataclass(frozen=True)
class LatePolicy:
    """What lateness costs: nothing ("none"), everything ("zero"), or a percentage per day up to a cap."""

    kind: str  # "none", "zero" or "per_day"
    percent_per_day: float = 0.0  # of the points possible
    max_percent: float = 100.0  # the deduction never exceeds this share of the points possible
    grace: dt.timedelta = dt.timedelta(0)  # lateness up to this much is forgiven; beyond it, counted in full

    @classmethod
    def parse(cls, text: str) -> LatePolicy:
        """`none`, `zero`, or `P%/day[,max=M%][,grace=G]` (G as 15min, 2h or 1d); spaces and case do not matter.

        Raises:
            LateWorkError: anything else, saying what was expected.
        """
        cleaned = re.sub(r"\s+", "", str(text)).lower()
        if cleaned in ("none", "zero"):
            return cls(cleaned)
        parts = cleaned.split(",")
        rate = re.fullmatch(_PERCENT + r"/(day|d)", parts[0])
        if not rate:
            raise LateWorkError(f"late policy {text!r}: {_POLICY_HELP}")
        percent, cap, grace = float(rate[1]), 100.0, dt.timedelta(0)
        seen = set()
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key in seen:
                raise LateWorkError(f"late policy {text!r}: {key}= is given twice")
            seen.add(key)
            if key == "max" and (m := re.fullmatch(_PERCENT, value)):
                cap = float(m[1])
            elif key == "grace" and (g := re.fullmatch(r"(\d+(?:\.\d+)?)(min|m|h|d)", value)):
                grace = dt.timedelta(minutes=float(g[1]) * {"min": 1, "m": 1, "h": 60, "d": 1440}[g[2]])
            else:
                raise LateWorkError(f"late policy {text!r}: cannot read {part!r}; {_POLICY_HELP}")
        if not 0 < percent <= 100:
            raise LateWorkError(f"late policy {text!r}: the deduction per day must be between 0% and 100%, got {rate[1]}%")
        if not 0 < cap <= 100:
            raise LateWorkError(f"late policy {text!r}: max= must be between 0% and 100%, got {cap:g}%")
        return cls("per_day", percent, cap, grace)

    def __str__(self) -> str:
        if self.kind != "per_day":
            return self.kind
        text = f"{self.percent_per_day:g}%/day"
        if self.max_percent < 100:
            text += f",max={self.max_percent:g}%"
        if self.grace:
            text += f",grace={self.grace.total_seconds() / 60:g}min"
        return text


def _points(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-6 else f"{value:.2f}".rstrip("0").rstrip(".")


def _duration(days: float) -> str:
    """1.0007 -> "1 day 1 min", 0.25 -> "6 h", 0.0001 -> "1 min": to the minute, at least one."""
    minutes = max(1, round(days * 1440))
    whole_days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{whole_days} day" + ("s" if whole_days != 1 else "")] if whole_days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts)


def _days(n: float) -> str:
    return f"{_points(n)} day" + ("" if abs(n - 1) < 1e-9 else "s")


def apply(policy: LatePolicy, total: float, max_total: float, lateness: Lateness) -> tuple[float, str]:
    """The total after the late policy, and why, in words for the gradebook and the student ("" when on time).

    Args:
        policy: from `LatePolicy.parse`.
        total: the points earned before the policy.
        max_total: the points possible (a per-day deduction is a share of them).
        lateness: the submission's lateness.
    """
    if not lateness.flagged:
        return float(total), ""
    if lateness.days is None:
        how = f"late ({lateness.source}), by how much unknown"
        if policy.kind == "zero":
            return 0.0, f"{how}: 0 points (late policy: zero)"
        if policy.kind == "none":
            return float(total), f"{how}: nothing deducted (late policy: none)"
        return float(total), f"{how}: nothing deducted; check the submission time and deduct by hand (late policy {policy})"
    exact = f"late {_duration(lateness.days)}"
    if policy.kind == "none":
        return float(total), f"{exact}: nothing deducted (late policy: none)"
    if policy.kind == "zero":
        return 0.0, f"{exact}: 0 points (late policy: zero)"
    if lateness.days <= policy.grace / DAY:
        return float(total), f"{exact}, within the grace of {_duration(policy.grace / DAY)}: nothing deducted (late policy {policy})"
    charged = max(1, lateness.whole_days or 0)  # every day begun counts whole, from the due date
    percent = min(charged * policy.percent_per_day, policy.max_percent)
    deduction = max_total * percent / 100
    new_total = round(max(0.0, total - deduction), 4)
    capped = " (the maximum)" if charged * policy.percent_per_day > policy.max_percent else ""
    return new_total, (f"{exact}, counted as {_days(charged)}: -{_points(percent)}%{capped} of {_points(max_total)} points "
                       f"= -{_points(min(deduction, total))} (late policy {policy})")


# ---------------------------------------------------------------- Gradescope


def load_gradescope_metadata(path: Path) -> dict:
    """Gradescope's submission_metadata.yml (Export Submissions) or .json (autograder), parsed safely.

    YAML goes through PyYAML's `safe_load`: plain data only, no Ruby or Python objects built.

    Raises:
        LateWorkError: the file is too large, unreadable, not YAML/JSON, or not a mapping.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_METADATA_BYTES:
            raise LateWorkError(f"{path} is larger than {MAX_METADATA_BYTES // 2**20} MiB: not Gradescope's metadata")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LateWorkError(f"cannot read Gradescope's metadata {path}: {first}") from None
    if not isinstance(data, dict):
        raise LateWorkError(f"{path}: expected Gradescope's metadata, a mapping, got {type(data).__name__}")
    return data


def _get(mapping, key: str):
    """`mapping[key]`, or its Ruby-symbol spelling `:key` as the export writes it."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(key, mapping.get(f":{key}"))


def gradescope_times(metadata: dict, tz: str | dt.tzinfo | None = None) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime | None]:
    """(submitted at, due date, late due date) from Gradescope's metadata of one submission.

    Args:
        metadata: the autograder's submission_metadata.json (`created_at`, `assignment.due_date`,
            `assignment.late_due_date`; a user's own `assignment.due_date`, an extension, wins
            over the assignment's, the latest of a group's), or one entry of the export's
            submission_metadata.yml (`:created_at:`; it has no due dates: None).
        tz: the timezone of a time without an offset (Gradescope always writes one).

    Raises:
        LateWorkError: a time that does not parse.
    """
    submitted = _as_time(_get(metadata, "created_at"), "created_at", tz)
    assignment = _get(metadata, "assignment") or {}
    due = _as_time(_get(assignment, "due_date"), "assignment.due_date", tz)
    late_due = _as_time(_get(assignment, "late_due_date"), "assignment.late_due_date", tz)
    own_dues, own_late = [], []
    for user in _get(metadata, "users") or []:
        own = _get(user, "assignment")
        if own:
            if (value := _as_time(_get(own, "due_date"), "users[].assignment.due_date", tz)) is not None:
                own_dues.append(value)
            if (value := _as_time(_get(own, "late_due_date"), "users[].assignment.late_due_date", tz)) is not None:
                own_late.append(value)
    if own_dues:
        due = max(own_dues)
    if own_late:
        late_due = max(own_late)
    return submitted, due, late_due


def gradescope_lateness(metadata: dict, extension: dt.datetime | None = None, tz: str | dt.tzinfo | None = None) -> Lateness:
    """A submission's lateness from Gradescope's metadata; `extension` (from `read_extensions`) wins over its due date."""
    submitted, due, late_due = gradescope_times(metadata, tz)
    found = Lateness.from_times(submitted, due, extension)
    if found.flagged and late_due is not None and extension is None and submitted is not None and submitted > late_due:
        return Lateness(found.days, True, f"{found.source}, after the late due date {_shown(late_due)}")
    return found
