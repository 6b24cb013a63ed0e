"""The command line: `python -m labs COMMAND`; `python -m labs --help` lists the commands.

Each command is declared by a function that adds its arguments and a handler that runs it;
`COMMANDS` ties them together. Handlers import what they need when they run, so that
`python -m labs train` does not pay for the grader, nor `grade` for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

from labs.grader.trusted.runner import DEFAULT_TIME_BUDGET, DEFAULT_TIMEOUT

RECIPES = ("mlp", "lenet", "alexnet")


# ---------------------------------------------------------------- grading


def _grading_limits(parser: argparse.ArgumentParser, budget_help: str) -> None:
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed per test (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--time-budget", type=float, default=DEFAULT_TIME_BUDGET,
                        help=f"{budget_help} (default: {DEFAULT_TIME_BUDGET:g})")
    parser.add_argument("--extra-tests", metavar="DIR", help="also grade with the instructor-only test files (test_*.py) in DIR")


def _declare_grade(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exercises", nargs="*", help="exercise ids to grade, e.g. 1.4 2.3 (default: all)")
    parser.add_argument("--submission", metavar="DIR", help="grade the exercise modules in DIR instead of labs/")
    parser.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json to PATH")
    parser.add_argument("--verbose", action="store_true", help="show every failing test, not only the first")
    parser.add_argument("--shards", type=int, default=None, help="test processes sharing the exercises (default: 2 with 2+ CPUs)")
    parser.add_argument("--check-sandbox", action="store_true",
                        help="grade nothing: print, layer by layer, what a worker on this machine gets; exit 1 if a layer "
                        "the machine supports did not apply (run it once on a new grading machine)")
    _grading_limits(parser, "seconds for the whole submission")


GRADING_NEEDS = ("torch", "pytest", "pytest_timeout", "hypothesis")


def wrong_interpreter() -> str | None:
    """One line naming this interpreter and the one to use, when it lacks what grading needs."""
    import importlib.util

    missing = [name for name in GRADING_NEEDS if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    from labs import REPO_ROOT

    venv = REPO_ROOT / ".venv" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    use = f"{venv} -m labs grade" if venv.exists() else "the Python of the environment where you ran `pip install -e .`"
    return (f"{sys.executable} has no {', '.join(missing).replace('_', '-')}: run the grader with {use}, "
            "or call check() from a notebook cell (it uses the notebook's own Python)")


def _grade(args: argparse.Namespace) -> int:
    from labs.grader.trusted.runner import run_grader

    problem = wrong_interpreter()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.check_sandbox:
        from labs.grader.trusted.sandbox_check import main as check_sandbox

        return check_sandbox()

    return run_grader(args.exercises, submission=args.submission, json_path=args.json, timeout=args.timeout,
                      verbose=args.verbose, time_budget=args.time_budget, extra_tests=args.extra_tests, shards=args.shards)


def _declare_grade_class(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", metavar="SUBMISSIONS", help="the folder (or export .zip) of submissions")
    parser.add_argument("--out", metavar="DIR", required=True, help="where results, feedback, grades.csv and report.md go")
    parser.add_argument("--jobs", type=int, default=None, help="submissions graded at a time (default: one per CPU)")
    parser.add_argument("--exercises", nargs="+", metavar="ID", help="grade only these exercise ids, e.g. 1.1 1.4 (default: all)")
    parser.add_argument("--force", action="store_true", help="regrade students graded by an earlier run")
    parser.add_argument("--max-unpacked-mb", type=float, default=20.0,
                        help="what one student's archives may expand to, in MiB (default: 20)")
    _grading_limits(parser, "seconds per submission")
    parser.add_argument("--only", nargs="+", metavar="ID",
                        help="regrade only these students (a folder under OUT/students/, or an ID of grades.csv), graded "
                        "before or not; grades.csv and the report still cover the whole class")
    parser.add_argument("--overrides", metavar="FILE",
                        help="points given by hand: a CSV file with the header student,exercise,points,reason (exercise: an "
                        "id such as 1.4, or total); later runs keep them, a file of only its header drops them")
    parser.add_argument("--shard", metavar="K/N",
                        help="grade only the K-th of N shares of the class (1/4 ... 4/4; in a Slurm job array "
                        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT) and write no gradebook: run again without --shard to assemble")
    parser.add_argument("--no-similarity", dest="similarity", action="store_false",
                        help="do not write similarity.md (pairs of submissions that share code beyond the starter)")
    parser.add_argument("--due", metavar="DATETIME",
                        help="the due date, ISO 8601: 2026-12-15T23:59 (add +01:00 or Z for a timezone; none removes it); later runs keep it")
    parser.add_argument("--extensions", metavar="FILE", help="a CSV file of extensions: student ID, new due date")
    parser.add_argument("--late-policy", metavar="POLICY",
                        help="none (the default: only the Late column), zero, or 10%%/day[,max=50%%][,grace=15min]")
    parser.add_argument("--timezone", metavar="TZ", help="the course's timezone for times written without one, e.g. Europe/Paris (default: UTC)")
    parser.add_argument("--assignment-name", metavar="NAME",
                        help="also write gradebook-canvas.csv for this Canvas assignment, named as Canvas's export names it: 'Lab 2 (123456)'")
    parser.add_argument("--lms-points", type=float, metavar="P",
                        help="the assignment's points in Canvas or Moodle; scores are scaled to them (default: the grader's total)")


def _grade_class(args: argparse.Namespace) -> int:
    import signal

    from labs.instructor.class_grading import run_grade_class

    # Ctrl-C stops the run and keeps what it finished, also when this process was started with
    # SIGINT ignored (a background job, nohup), which it would otherwise inherit.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    return run_grade_class(args.submissions, args.out, args.jobs, args.exercises, args.timeout, args.time_budget,
                           args.extra_tests, args.force, args.max_unpacked_mb, only=args.only, overrides=args.overrides,
                           shard=args.shard, similarity=args.similarity, due=args.due, extensions=args.extensions,
                           late_policy=args.late_policy, timezone=args.timezone, assignment_name=args.assignment_name,
                           lms_points=args.lms_points)


def _declare_gradescope_package(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="ZIP", default="autograder.zip", help="the zip to write (default: autograder.zip)")
    parser.add_argument("--extra-tests", metavar="DIR", help="hidden tests (test_*.py) to grade with on Gradescope")


def _gradescope_package(args: argparse.Namespace) -> int:
    from labs.instructor.gradescope_zip import run_gradescope_package

    return run_gradescope_package(args.out, args.extra_tests)


def _declare_pack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="ZIP", default=None, help="the zip to write (default: submission.zip in the course folder)")


def _pack(args: argparse.Namespace) -> int:
    from labs.grader.pack import run_pack

    return run_pack(args.out)


# ---------------------------------------------------------------- the course's files


def _declare_release(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    parser.add_argument("--force", action="store_true", help="overwrite labs/ files that hold edits (copies are kept in labs/.backup/)")


def _release(args: argparse.Namespace) -> int:
    from labs.instructor import release as releasing
    from labs.instructor.release import ReleaseError, release, stale_files

    REPO_ROOT = releasing.REPO_ROOT  # read when called: the course checks point it at a copy
    try:
        if args.check:
            stale = stale_files(REPO_ROOT)
            for path in stale:
                print(f"stale: {path.relative_to(REPO_ROOT)} (run `python -m labs release`)")
            return 1 if stale else 0
        changed, backup = release(REPO_ROOT, force=args.force)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    if backup is not None:
        print(f"kept the replaced files, as they were, in {backup.relative_to(REPO_ROOT)}/")
    print("stubs are up to date" if not changed else f"{len(changed)} file(s) regenerated")
    return 0


def _declare_handout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="where to write the students' copy (a new or empty folder, or an earlier hand-out: its .git is kept)")


def _handout(args: argparse.Namespace) -> int:
    from labs.instructor.handout import run_handout

    return run_handout(args.out)


# ---------------------------------------------------------------- training and data


def _declare_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", choices=RECIPES)


def _train(args: argparse.Namespace) -> int:
    recipe = importlib.import_module(f"labs.provided.recipes.{args.recipe}")
    try:
        return recipe.main(args.rest)
    except NotImplementedError as error:  # an unfinished exercise: say which, not a traceback
        print(f"\nerror: {error}.\nComplete it (check with `python -m labs grade`), "
              "or train the reference with LABS_IMPL=solutions.", file=sys.stderr)
        return 1


def _declare_download(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=("mnist", "cifar10"))
    parser.add_argument("--data-dir", help="folder to fetch into (default: LABS_DATA_DIR or data/)")


def _download(args: argparse.Namespace) -> int:
    from labs.provided.data import DataError, download

    try:
        print(f"{args.dataset} is ready in {download(args.dataset, args.data_dir)}")
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- the table


class Command:
    def __init__(self, name: str, help: str, declare: Callable, run: Callable, description: str | None = None,
                 passes_rest: bool = False) -> None:
        self.name, self.help, self.declare, self.run = name, help, declare, run
        self.description, self.passes_rest = description, passes_rest


COMMANDS = [
    Command("grade", "grade your labs/ (or a submission) exercise by exercise", _declare_grade, _grade),
    Command("pack", "check that your four modules import and build the zip to upload", _declare_pack, _pack),
    Command("grade-class", "grade a class's submissions: results, feedback, grades.csv and a report (instructors)",
            _declare_grade_class, _grade_class,
            description="Grade one folder or .zip per student (also Moodle's, Canvas's and Gradescope's downloads) "
            "into OUT: students/<id>/results.json and feedback.md, grades.csv, report.md with plots. "
            "Rerun the same command to resume an interrupted run."),
    Command("gradescope-package", "build the Gradescope autograder zip (instructors)", _declare_gradescope_package, _gradescope_package),
    Command("release", "regenerate the stubs in labs/ from solutions/ (instructors)", _declare_release, _release),
    Command("handout", "build the students' repository: no solutions/, course checks or instructors' tools (instructors)",
            _declare_handout, _handout),
    Command("train", "train a model headless", _declare_train, _train, passes_rest=True),
    Command("download", "fetch a dataset into the data folder", _declare_download, _download),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labs", description="Course labs for convolutional networks.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        # a recipe's own options (--epochs, --help) go to the recipe, not to this parser
        sub = subparsers.add_parser(command.name, help=command.help, description=command.description,
                                    add_help=not command.passes_rest)
        command.declare(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    command = next(c for c in COMMANDS if c.name == args.command)
    if rest and not command.passes_rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return command.run(args)
