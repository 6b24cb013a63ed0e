"""`python -m labs pack`: the zip a student uploads, checked before it is written.

Each exercise module (basics.py, mlp.py, conv.py, models.py) must import, in a fresh process
with this interpreter, and define every function and class that the exercises grade. A module
that does not is named, with its error, and no zip is written: an upload that cannot even be
imported would score 0 in every exercise of that module.

The zip holds the four modules at its top level, which is what `python -m labs grade
--submission`, `grade-class` (unpacked) and the Gradescope autograder take as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from labs import EXERCISE_MODULES, REPO_ROOT
from labs.grader.catalog import load_catalog
from labs.provided.atomic import write_atomically

FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the same zip for the same files

# Run in a fresh process: imports one exercise module of labs/ and lists the names it lacks.
_PROBE = """
import importlib, json, sys, traceback
name, wanted = sys.argv[1], json.loads(sys.argv[2])
try:
    module = importlib.import_module("labs." + name)
except BaseException as error:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (line {error.lineno})" if isinstance(error, SyntaxError) and error.lineno else (
        f" (line {frame.lineno})" if frame and frame.filename.endswith(name + ".py") else "")
    print(json.dumps({"error": f"{type(error).__name__}: {error}{where}"}))
else:
    missing = []
    for dotted in wanted:
        target = module
        for part in dotted.split("."):
            target = getattr(target, part, None)
        if target is None:
            missing.append(dotted)
    print(json.dumps({"missing": missing}))
"""


def check_modules(folder: Path = REPO_ROOT / "labs") -> dict[str, str]:
    """{module: what is wrong} for the exercise modules in `folder` that would not grade; {} when all import."""
    wanted: dict[str, list[str]] = {}
    for exercise in load_catalog():
        wanted.setdefault(exercise.module, []).extend(exercise.functions)
    problems = {}
    env = {**os.environ, "LABS_IMPL": "labs", "PYTHONPATH": str(folder.parent)}
    for module in EXERCISE_MODULES:
        path = folder / f"{module}.py"
        if not path.is_file() or path.is_symlink():
            problems[module] = f"labs/{module}.py is missing (or is not a regular file)"
            continue
        process = subprocess.run([sys.executable, "-c", _PROBE, module, json.dumps(wanted.get(module, []))],
                                 cwd=folder.parent, env=env, capture_output=True, text=True, timeout=600)
        try:
            answer = json.loads(process.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            answer = {"error": f"importing it ended the process (exit code {process.returncode})"}
        if "error" in answer:
            problems[module] = f"labs/{module}.py does not import: {answer['error']}"
        elif answer["missing"]:
            problems[module] = f"labs/{module}.py lacks {', '.join(answer['missing'])}, which the exercises grade"
    return problems


def pack(out: Path, folder: Path = REPO_ROOT / "labs") -> list[str]:
    """Write the upload zip of the exercise modules in `folder` to `out`; returns the names in it."""
    names = [f"{module}.py" for module in EXERCISE_MODULES]

    def write(file) -> None:
        with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                zf.writestr(info, (folder / name).read_bytes())

    write_atomically(out, write)
    return names


def run_pack(out: str | None) -> int:
    """`python -m labs pack`: 0 and the zip when every module imports; 1 and the reasons otherwise."""
    target = Path(out) if out else REPO_ROOT / "submission.zip"
    problems = check_modules()
    for problem in problems.values():
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"no zip written: fix {'this module' if len(problems) == 1 else 'these modules'} first "
              "(`python -m labs grade` shows the rest)", file=sys.stderr)
        return 1
    names = pack(target)
    print(f"wrote {target} ({', '.join(names)}): upload it as it is")
    return 0
