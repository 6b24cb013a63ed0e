"""The Gradescope autograder: `python -m labs gradescope-package --out autograder.zip [--extra-tests DIR]`.

Gradescope builds an image from the zip: it unpacks it into /autograder/source, runs setup.sh
once (as root), then, for each submission, puts the student's files in /autograder/submission,
runs /autograder/run_autograder (a copy of the one in the zip) and shows
/autograder/results/results.json. The zip holds:

    setup.sh, run_autograder   at its root, as Gradescope requires
    labs/                      the course's code, and the stubs as `python -m labs release` generates
                               them from solutions/ (never the instructor's edited working copy)
    tests/*.py                 the graded tests (not tests/course/, the course's own checks)
    hidden_tests/test_*.py     the instructor-only tests of --extra-tests
    conftest.py, pyproject.toml, requirements.txt, README.md

and never solutions/. run_autograder runs `python -m labs grade --submission ... --json ...
--extra-tests hidden_tests` from /autograder/source, after making that folder readable by
root only: the student's code runs as an unprivileged user (labs/grader/__init__.py), so even without
Landlock it cannot read the hidden tests. Three environment variables let the course checks run
it outside Gradescope: LABS_AUTOGRADER_ROOT (instead of /autograder), PYTHON (the interpreter)
and LABS_GRADE_EXERCISES (grade only these exercise ids, e.g. "1.1 1.4").
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from labs import EXERCISE_MODULES, REPO_ROOT
from labs.grader.catalog import graded_test_files
from labs.provided.atomic import write_atomically

HIDDEN_DIR = "hidden_tests"
TOP_LEVEL_FILES = ("conftest.py", "pyproject.toml", "requirements.txt", "README.md")
EXCLUDED_PARTS = {"__pycache__", ".backup", ".ipynb_checkpoints"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same zip for the same files, whenever it is built

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu base image).
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
# torch's CPU build: Gradescope has no GPU, and the default (CUDA) build is several GB.
/autograder/venv/bin/pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
# The course's requirements (torch is already there). run_autograder runs the grader from
# /autograder/source, so the labs package itself needs no install.
/autograder/venv/bin/pip install -r /autograder/source/requirements.txt
"""

RUN_AUTOGRADER = f"""\
#!/usr/bin/env bash
# Gradescope runs this for every submission, as root: it grades /autograder/submission with the
# course's tests and the hidden ones, and writes /autograder/results/results.json.
# Outside Gradescope: LABS_AUTOGRADER_ROOT replaces /autograder, PYTHON names the interpreter,
# LABS_GRADE_EXERCISES grades only the exercise ids it lists ("1.1 1.4").
set -u
ROOT="${{LABS_AUTOGRADER_ROOT:-/autograder}}"
if [ -z "${{PYTHON:-}}" ]; then
  if [ -x "$ROOT/venv/bin/python" ]; then PYTHON="$ROOT/venv/bin/python"; else PYTHON=python3; fi
fi
mkdir -p "$ROOT/results"
# The tests, hidden ones included, for root only: the student's code runs as another user.
chmod -R go-rwx "$ROOT/source"
cd "$ROOT/source" || exit 1
# shellcheck disable=SC2086  # LABS_GRADE_EXERCISES is a list of ids, split on purpose
exec "$PYTHON" -m labs grade ${{LABS_GRADE_EXERCISES:-}} --submission "$ROOT/submission" \\
    --json "$ROOT/results/results.json" --extra-tests "$ROOT/source/{HIDDEN_DIR}"
"""

HIDDEN_README = """\
Instructor-only tests: test_*.py files here are graded like tests/test_*.py (same markers,
fixtures and points) and a failure shows the student only what it was worth. Build the
package with `python -m labs gradescope-package --out autograder.zip --extra-tests DIR`.
"""


def package_files(extra_tests: Path | None = None) -> dict[str, bytes | Path]:
    """{path in the zip: a file to copy, or the bytes to write} for the autograder zip."""
    files: dict[str, bytes | Path] = {"setup.sh": SETUP_SH.encode(), "run_autograder": RUN_AUTOGRADER.encode()}
    for path in sorted((REPO_ROOT / "labs").rglob("*")):
        relative = path.relative_to(REPO_ROOT)
        if path.is_file() and not path.is_symlink() and not EXCLUDED_PARTS & set(relative.parts) and path.suffix != ".pyc":
            files[relative.as_posix()] = path
    files.update(_released_stubs())
    for path in graded_test_files():  # tests/course/ stays out: it needs solutions/
        files[f"tests/{path.name}"] = path
    for name in TOP_LEVEL_FILES:
        files[name] = REPO_ROOT / name
    files[f"{HIDDEN_DIR}/README.md"] = HIDDEN_README.encode()
    if extra_tests is not None:
        for path in sorted(Path(extra_tests).glob("test_*.py")):
            files[f"{HIDDEN_DIR}/{path.name}"] = path
    return files


def build_package(out: Path, extra_tests: Path | None = None) -> list[str]:
    """Write the autograder zip to `out`; returns the paths it holds."""
    if extra_tests is not None and not Path(extra_tests).is_dir():
        raise FileNotFoundError(f"the hidden tests folder {extra_tests} does not exist")
    files = package_files(extra_tests)
    assert not any(name.startswith("solutions/") for name in files), "the autograder must never hold the solutions"

    def write(file) -> None:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, content in files.items():
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                executable = name in ("setup.sh", "run_autograder")
                info.external_attr = ((0o100755 if executable else 0o100644) << 16)
                zf.writestr(info, content if isinstance(content, bytes) else content.read_bytes())

    write_atomically(out, write)
    return list(files)


def run_gradescope_package(out: str, extra_tests: str | None) -> int:
    """`python -m labs gradescope-package`: build the zip and say what is in it."""
    try:
        names = build_package(Path(out), Path(extra_tests) if extra_tests else None)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hidden = [n for n in names if n.startswith(f"{HIDDEN_DIR}/test_")]
    stale = _stale_stubs()
    if stale:
        print(f"note: the zip holds the stubs that `python -m labs release` generates from solutions/, not your "
              f"working copy's {', '.join(stale)} (run release to bring labs/ up to date)")
    size = Path(out).stat().st_size
    print(f"wrote {out} ({len(names)} files, {size / 1024:.0f} KiB; {len(hidden)} hidden test file(s))")
    print("Upload it as the autograder of a Gradescope programming assignment (Ubuntu base image). "
          "setup.sh installs Python, torch (CPU) and requirements.txt; run_autograder grades "
          "/autograder/submission into /autograder/results/results.json.")
    if not hidden:
        print("note: no hidden tests (--extra-tests DIR adds the test_*.py files of DIR)")
    return 0


def _released_stubs() -> dict[str, bytes]:
    """{labs/<module>.py: the stub release generates} from solutions/; the committed stubs in a hand-out without it."""
    if not (REPO_ROOT / "solutions").is_dir():
        return {f"labs/{m}.py": (REPO_ROOT / "labs" / f"{m}.py").read_bytes() for m in EXERCISE_MODULES}
    from labs.instructor.release import generate

    generated, _ = generate(REPO_ROOT)
    return {path.relative_to(REPO_ROOT).as_posix(): text.encode() for path, text in generated.items()}


def _stale_stubs() -> list[str]:
    """The labs/ files that differ from what release generates (none where solutions/ is absent: a hand-out)."""
    if not (REPO_ROOT / "solutions").is_dir():
        return []
    from labs.instructor.release import stale_files

    return [path.relative_to(REPO_ROOT).as_posix() for path in stale_files(REPO_ROOT)]
