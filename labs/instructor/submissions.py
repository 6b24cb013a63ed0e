"""A class's submissions as learning platforms hand them out: find each student's, unpack it safely.

`python -m labs grade-class SUBMISSIONS` reads one folder, laid out in any of these ways:

- one folder or .zip per student, named as the instructor likes (`alice/`, `bob.zip`);
- Moodle's "Download all submissions": a folder per student, `Full Name_ID_assignsubmission_file_`
  (the ID is Moodle's participant number), or without folders, files named
  `Full Name_ID_assignsubmission_file_basics.py`;
- Canvas's "Download submissions": files `lastfirst_USERID_SUBMISSIONID_basics.py` (late ones
  `lastfirst_LATE_USERID_...`), the USERID being the ID column of Canvas's gradebook;
- Gradescope's "Export submissions": folders `submission_N/` beside `submission_metadata.yml`,
  which names the students of each submission (a group's members each get a row of grades).

SUBMISSIONS may also be that export as a .zip. Each student's files are gathered in a work
folder of the output, never beside the input. Archives are unpacked there with limits: a
member whose path is absolute or climbs out with `..` (zip slip) is skipped, so is a symbolic
link, and an archive that would expand past `max_bytes` (a zip bomb, or a dataset zipped by
mistake) or hold more than `max_files` files is refused as a whole. A .zip found inside a
student's files (a Moodle folder holding the zip that was uploaded) is unpacked the same way.
Then the exercise modules (`basics.py`, `mlp.py`, `conv.py`, `models.py`) are looked for at any
depth: the folder holding most of them wins, the shallowest on a tie. They are copied, alone,
into the folder that is graded, just as `python -m labs grade --submission` would find them
there. What cannot be graded raises `SubmissionProblem`, with the reason in plain words.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from labs import EXERCISE_MODULES

MAX_BYTES = 20 * 2**20  # what one student's archives may expand to, in all
MAX_FILES = 2000  # files in one student's archives, in all
MAX_NESTING = 2  # a zip inside a zip inside a student's folder, and no deeper
CLASS_MAX_BYTES = 4 * 2**30  # a whole class's export, when SUBMISSIONS is a .zip
CLASS_MAX_FILES = 200_000
SKIPPED_DIRS = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", "node_modules"}  # and hidden folders

MOODLE_FOLDER = re.compile(r"^(?P<name>.+?)_(?P<id>[^_]+)_assignsubmission_[a-z]+_?$")
MOODLE_FILE = re.compile(r"^(?P<name>.+?)_(?P<id>[^_]+)_assignsubmission_[a-z]+_(?P<file>.+)$")
CANVAS_FILE = re.compile(r"^(?P<name>[^_]+)(?P<late>_LATE)?_(?P<id>\d+)_\d+_(?P<file>.+)$")
CANVAS_RESUBMISSION = re.compile(r"-\d+(?=\.[A-Za-z0-9]+$)")  # Canvas renames a second basics.py to basics-1.py
GRADESCOPE_METADATA = "submission_metadata.yml"


class SubmissionProblem(Exception):
    """A student's files cannot be graded: the message says why, for the report and the student."""


@dataclass(frozen=True)
class Person:
    """A student as the gradebook knows them: `id` is the ID column, `sis_id` and `login` Canvas's SIS columns."""

    id: str
    name: str
    sis_id: str = ""
    login: str = ""


@dataclass
class Submission:
    """One student's (or one group's) files: folders, archives, and loose files with the name the student gave them."""

    key: str  # unique in the class and safe as a folder name: the output goes to students/<key>/
    label: str  # the name it had in SUBMISSIONS, for the report
    people: list[Person]
    sources: list[tuple[Path, str]] = field(default_factory=list)  # (path, its name as submitted)
    platform: str = ""  # "moodle", "canvas" or "gradescope" when the names say so: its gradebook file can be written
    marked_late: bool = False  # Canvas named a file of it `..._LATE_...`: submitted after the due date
    submitted_at: datetime.datetime | None = None  # Gradescope's submission time
    due_at: datetime.datetime | None = None  # the assignment's due date, where the export gives it (Gradescope)
    late_due_at: datetime.datetime | None = None


@dataclass
class Unpacked:
    """What `unpack` found: the folder to grade, where the modules came from, and what was skipped."""

    folder: Path
    found_in: str  # where the modules were, relative to the submission: "labs/", "bob.zip: lab/labs/"
    missing: list[str]  # exercise modules not found (graded as missing)
    notes: list[str]  # what was skipped while unpacking, in plain words


# ---------------------------------------------------------------- finding the students


def find_submissions(root: Path, work: Path) -> tuple[list[Submission], list[str]]:
    """The submissions in `root` (a folder, or an export .zip unpacked into `work`), and notes on what was ignored."""
    root = Path(root)
    notes: list[str] = []
    if root.is_file() and root.suffix.lower() == ".zip":
        target = work / ".export"  # a student's key never starts with a dot
        shutil.rmtree(target, ignore_errors=True)
        skipped = _extract(root, target, _Budget(CLASS_MAX_BYTES, CLASS_MAX_FILES), root.name)
        notes += skipped
        root = target
    if not root.is_dir():
        raise SubmissionProblem(f"{root} is neither a folder nor a .zip of submissions")
    entries = _visible(root)
    if not (root / GRADESCOPE_METADATA).is_file() and len(entries) == 1 and entries[0].is_dir() \
            and (entries[0] / GRADESCOPE_METADATA).is_file():
        root = entries[0]  # Gradescope's export unpacks into one folder, assignment_N_export/
    if (root / GRADESCOPE_METADATA).is_file():
        submissions, ignored = _gradescope(root)
    else:
        submissions, ignored = _plain(root)
    notes += [f"ignored {name}: neither a student's folder nor a .zip" for name in ignored]
    return _unique_keys(submissions), notes


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name not in SKIPPED_DIRS)


def _plain(root: Path) -> tuple[list[Submission], list[str]]:
    """One folder or zip per student (Moodle's folders among them), or loose files named by Moodle or Canvas."""
    found: dict[str, Submission] = {}
    ignored = []
    for path in _visible(root):
        if path.is_symlink():
            ignored.append(path.name)
            continue
        if path.is_dir() or path.suffix.lower() == ".zip":
            stem = path.name if path.is_dir() else path.name[: -len(".zip")]
            moodle = MOODLE_FOLDER.match(stem)
            if moodle:  # Moodle names a folder after the student and the plugin: merge file_ and onlinetext_
                person = Person(moodle["id"], moodle["name"])
                group = found.setdefault(f"moodle:{person.id}", Submission(person.id, path.name, [person], platform="moodle"))
            else:
                group = found.setdefault(f"name:{stem}", Submission(stem, path.name, [Person(stem, stem)]))
            group.sources.append((path, path.name))
            continue
        loose = MOODLE_FILE.match(path.name) or CANVAS_FILE.match(path.name)
        if loose and path.is_file():
            person = Person(loose["id"], loose["name"])
            platform = "moodle" if loose.re is MOODLE_FILE else "canvas"
            group = found.setdefault(f"loose:{person.id}", Submission(person.id, f"{loose['name']}_{person.id}_*", [person],
                                                                      platform=platform))
            name = loose["file"] if loose.re is MOODLE_FILE else CANVAS_RESUBMISSION.sub("", loose["file"])
            group.sources.append((path, name))
            group.marked_late = group.marked_late or (loose.re is CANVAS_FILE and bool(loose["late"]))
            continue
        ignored.append(path.name)
    return list(found.values()), ignored


def _gradescope(root: Path) -> tuple[list[Submission], list[str]]:
    """Gradescope's export: a folder per submission, its students in submission_metadata.yml."""
    entries = read_gradescope_submissions(root / GRADESCOPE_METADATA)
    submissions, ignored = [], []
    for path in _visible(root):
        if path.name == GRADESCOPE_METADATA:
            continue
        if not path.is_dir() or path.is_symlink():
            ignored.append(path.name)
            continue
        entry = entries.get(path.name) or GradescopeSubmission(path.name, [])
        members = entry.people or [Person(path.name, path.name)]
        submissions.append(Submission(members[0].id, path.name, members, [(path, path.name)], platform="gradescope",
                                      submitted_at=entry.created_at,
                                      due_at=entry.due_date, late_due_at=entry.late_due_date))
    return submissions, ignored


@dataclass
class GradescopeSubmission:
    """One entry of Gradescope's submission_metadata.yml: its students and its times (None where not given)."""

    folder: str  # submission_N, the folder that holds the files
    people: list[Person]
    created_at: datetime.datetime | None = None  # when it was submitted
    due_date: datetime.datetime | None = None  # the assignment's due date, where the export gives it
    late_due_date: datetime.datetime | None = None  # the late-submission deadline, where the export gives it


class _MetadataLoader(yaml.SafeLoader):
    """YAML as Gradescope's Ruby writes it, read safely (no object is ever built from a tag).

    Every scalar stays a string but timestamps and nulls: a student ID `0123` is not the octal
    number 83, nor `1e5` a float. Ruby's tags (`!ruby/object:BigDecimal 18:0.1e2` for a score,
    `!ruby/hash:...`) are read as the plain value they tag.
    """


_MetadataLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:null")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_MetadataLoader.add_multi_constructor("!", _untagged)
_MetadataLoader.add_multi_constructor("tag:yaml.org,2002:ruby", _untagged)


def read_gradescope_submissions(path: Path) -> dict[str, GradescopeSubmission]:
    """{submission folder: its entry} from Gradescope's submission_metadata.yml.

    The file maps each folder to Ruby-style keys (symbols, written with a leading colon), one
    submitter a list item:

        submission_123:
          :submitters:
          - :name: Ada Lovelace
            :sid: '1815'
            :email: ada@example.org
          :created_at: 2024-01-01 10:00:00.123456000 -07:00

    A student's ID is the `:sid:` when given, else the e-mail address, else the name. The due
    dates are read from the entry or its `:assignment:` where the export has them.

    Raises:
        SubmissionProblem: the file is not YAML, or not a mapping of folders.
    """
    try:
        data = yaml.load(path.read_text(encoding="utf-8", errors="replace"), Loader=_MetadataLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SubmissionProblem(f"{path.name} is not the YAML that Gradescope exports{where}: "
                                f"{getattr(error, 'problem', None) or error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SubmissionProblem(f"{path.name} should map each submission folder to its students")
    found = {}
    for folder, entry in _symbols(data).items():
        if not isinstance(entry, dict):
            continue
        submitters = entry.get("submitters") if isinstance(entry.get("submitters"), list) else []
        members = []
        for s in submitters:
            if not isinstance(s, dict):
                continue
            sid, email, name = (_text(s.get(k)) for k in ("sid", "email", "name"))
            members.append(Person(sid or email or name or str(folder), name or sid or email, sis_id=sid, login=email))
        assignment = entry.get("assignment") if isinstance(entry.get("assignment"), dict) else {}
        found[str(folder)] = GradescopeSubmission(
            str(folder), members, _time(entry.get("created_at")),
            _time(entry.get("due_date", assignment.get("due_date"))),
            _time(entry.get("late_due_date", assignment.get("late_due_date"))),
        )
    return found


def read_gradescope_metadata(path: Path) -> dict[str, list[Person]]:
    """{submission folder: its students} from Gradescope's submission_metadata.yml (read_gradescope_submissions)."""
    return {folder: entry.people for folder, entry in read_gradescope_submissions(path).items() if entry.people}


def _symbols(value: object) -> object:
    """Ruby's symbol keys (`:name`) as plain keys (`name`), at every depth."""
    if isinstance(value, dict):
        return {(k[1:] if isinstance(k, str) and k.startswith(":") else k): _symbols(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_symbols(v) for v in value]
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _time(value: object) -> datetime.datetime | None:
    """A timestamp as YAML read it, or as text in ISO 8601 (`2024-01-01 10:00:00 -07:00` too); None otherwise."""
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value.strip():
        text = re.sub(r"\s+([-+]\d\d:?\d\d|Z)$", r"\1", value.strip())  # "10:00:00 -07:00" -> "10:00:00-07:00"
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)  # Ruby's nanoseconds: Python reads microseconds
        try:
            return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _safe_key(text: str) -> str:
    """A student id as a folder name: any letters (é, 李) and spaces kept; separators and control characters replaced."""
    text = unicodedata.normalize("NFC", text)
    text = "".join("_" if ch in '/\\:*?"<>|' or unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = text.strip().lstrip(".").strip()
    return text[:100] or "student"


def _unique_keys(submissions: list[Submission]) -> list[Submission]:
    seen: dict[str, int] = {}
    for submission in sorted(submissions, key=lambda s: s.label):
        key = _safe_key(submission.key)
        seen[key.casefold()] = seen.get(key.casefold(), 0) + 1
        submission.key = key if seen[key.casefold()] == 1 else f"{key}-{seen[key.casefold()]}"
    return sorted(submissions, key=lambda s: s.key.casefold())


# ---------------------------------------------------------------- unpacking one student


@dataclass
class _Budget:
    """What the archives of one student may still expand to."""

    bytes_left: int
    files_left: int


def unpack(submission: Submission, work: Path, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> Unpacked:
    """Gather `submission`'s files under `work` and copy its exercise modules into `work/submission`.

    Raises:
        SubmissionProblem: an archive that cannot be read or is too large, or no exercise module anywhere.
    """
    if work.exists():
        shutil.rmtree(work)
    files = work / "files"
    files.mkdir(parents=True)
    budget = _Budget(max_bytes, max_files)
    notes: list[str] = []
    roots: list[tuple[Path, str]] = []  # (folder to search, how the report names it)
    for index, (path, name) in enumerate(submission.sources):
        if path.is_dir():
            roots.append((path, name if len(submission.sources) > 1 else ""))
        elif name.lower().endswith(".zip"):
            target = files / str(index)
            notes += _extract(path, target, budget, name)
            roots.append((target, name if len(submission.sources) > 1 else ""))
        else:  # a loose file, under the name the student gave it
            target = files / str(index)
            target.mkdir()
            shutil.copyfile(path, target / name)
            roots.append((target, ""))
    roots += _nested_archives(roots, files, budget, notes)
    best = _find_module_folder(roots)
    if best is None:
        names = ", ".join(f"{m}.py" for m in EXERCISE_MODULES)
        what = "is empty" if not any(_files_under(folder) for folder, _ in roots) else f"holds no exercise module ({names}) at any depth"
        raise SubmissionProblem(f"the submission {what}")
    folder, where = best
    graded = work / "submission"
    graded.mkdir()
    missing = []
    for module in EXERCISE_MODULES:
        path = folder / f"{module}.py"
        if path.is_file() and not path.is_symlink():
            if path.stat().st_size > max_bytes:
                raise SubmissionProblem(f"{module}.py is {_size(path.stat().st_size)}, more than the {_size(max_bytes)} allowed")
            shutil.copyfile(path, graded / f"{module}.py")
        else:
            missing.append(f"{module}.py")
    return Unpacked(graded, where or "(top level)", missing, notes)


def _nested_archives(roots: list[tuple[Path, str]], files: Path, budget: _Budget, notes: list[str]) -> list[tuple[Path, str]]:
    """Unpack the .zip files found among the student's files (MAX_NESTING levels deep)."""
    found: list[tuple[Path, str]] = []
    level = roots
    for _ in range(MAX_NESTING):
        next_level = []
        for folder, label in level:
            for archive in _files_under(folder):
                if archive.suffix.lower() != ".zip":
                    continue
                relative = archive.relative_to(folder).as_posix()
                name = f"{label}: {relative}" if label else relative
                target = files / f"nested-{len(found) + len(next_level)}"
                try:
                    notes += _extract(archive, target, budget, name)
                except SubmissionProblem as problem:
                    raise SubmissionProblem(f"inside the submission, {problem}") from None
                next_level.append((target, name))
        found += next_level
        level = next_level
    return found


def _files_under(folder: Path) -> list[Path]:
    """Regular files under `folder`, symbolic links and hidden or tool folders left out."""
    found = []
    for parent, dirs, names in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and not os.path.islink(os.path.join(parent, d)))
        for name in sorted(names):
            path = Path(parent) / name
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return found


def _find_module_folder(roots: list[tuple[Path, str]]) -> tuple[Path, str] | None:
    """The folder holding the most exercise modules; the shallowest on a tie, then one named labs/."""
    best, best_rank = None, None
    wanted = {f"{module}.py" for module in EXERCISE_MODULES}
    for order, (root, label) in enumerate(roots):
        counts: dict[Path, int] = {}
        for path in _files_under(root):
            if path.name in wanted:
                counts[path.parent] = counts.get(path.parent, 0) + 1
        for folder, count in counts.items():
            relative = folder.relative_to(root)
            rank = (-count, len(relative.parts), folder.name != "labs", order, relative.as_posix())
            if best_rank is None or rank < best_rank:
                shown = f"{relative.as_posix()}/" if relative.parts else ""
                best, best_rank = (folder, f"{label}: {shown}" if label and shown else label or shown), rank
    return best


def _extract(archive: Path, target: Path, budget: _Budget, name: str) -> list[str]:
    """Unpack `archive` into `target` within `budget`; returns notes on skipped members.

    Raises:
        SubmissionProblem: the archive is unreadable, encrypted, or too large (nothing is kept then).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [info for info in zf.infolist() if not info.is_dir()]
            if len(members) > budget.files_left:
                raise SubmissionProblem(f"{name} holds {len(members)} files, more than the {budget.files_left} allowed")
            declared = sum(info.file_size for info in members)
            if declared > budget.bytes_left:
                raise SubmissionProblem(
                    f"{name} would expand to {_size(declared)}, more than the {_size(budget.bytes_left)} allowed "
                    "(a zip bomb, or data zipped with the code?); it was not unpacked"
                )
            unsafe, links = [], []
            target.mkdir(parents=True, exist_ok=True)
            root = target.resolve()
            for info in zf.infolist():
                parts = info.filename.replace("\\", "/").split("/")
                if info.filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", info.filename) or ".." in parts:
                    unsafe.append(info.filename)
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    links.append(info.filename)
                    continue
                parts = [p for p in parts if p not in ("", ".")]
                if not parts or parts[0] == "__MACOSX":
                    continue
                destination = target.joinpath(*parts)
                if root not in destination.resolve().parents:  # belt and braces: never outside target
                    unsafe.append(info.filename)
                    continue
                if info.is_dir():  # kept: an empty folder is a student who handed in nothing
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                _copy_member(zf, info, destination, budget, name)
    except SubmissionProblem:
        shutil.rmtree(target, ignore_errors=True)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError) as error:
        shutil.rmtree(target, ignore_errors=True)
        detail = "it is encrypted" if "encrypted" in str(error) else f"{type(error).__name__}: {error}"
        raise SubmissionProblem(f"{name} could not be unpacked ({detail})") from None
    notes = []
    if unsafe:
        notes.append(f"{name}: skipped {len(unsafe)} member(s) whose path leaves the archive's folder (absolute or '..'): {_some(unsafe)}")
    if links:
        notes.append(f"{name}: skipped {len(links)} symbolic link(s): {_some(links)}")
    return notes


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: _Budget, name: str) -> None:
    """Copy one member, counting the bytes actually written against the budget (a header can lie)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as source, open(destination, "wb") as sink:
        while chunk := source.read(1 << 16):
            budget.bytes_left -= len(chunk)
            if budget.bytes_left < 0:
                raise SubmissionProblem(f"{name} expands to more than allowed (a zip bomb?); it was not unpacked")
            sink.write(chunk)
    budget.files_left -= 1
    os.chmod(destination, 0o644)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _some(names: list[str], shown: int = 3) -> str:
    listed = ", ".join(repr(n) for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")
