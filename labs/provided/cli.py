"""The command line: `python -m labs {grade,grade-class,gradescope-package,release,train,download}`."""

from __future__ import annotations

import argparse
import importlib
import sys

RECIPES = ("mlp", "lenet", "alexnet")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m labs", description="Course labs for convolutional networks.")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade your labs/ (or a submission) exercise by exercise")
    grade.add_argument("exercises", nargs="*", help="exercise ids to grade, e.g. 1.4 2.3 (default: all)")
    grade.add_argument("--submission", metavar="DIR", help="grade the exercise modules in DIR instead of labs/")
    grade.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json to PATH")
    grade.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per test (default: 60)")
    grade.add_argument("--verbose", action="store_true", help="show every failing test, not only the first")
    grade.add_argument("--time-budget", type=float, default=900.0, help="seconds for the whole submission (default: 900)")
    grade.add_argument("--extra-tests", metavar="DIR", help="also grade with the instructor-only test files (test_*.py) in DIR")
    grade.add_argument("--shards", type=int, default=None, help="test processes sharing the exercises (default: 2 with 2+ CPUs)")

    grade_class = commands.add_parser(
        "grade-class", help="grade a class's submissions: results, feedback, grades.csv and a report (instructors)",
        description="Grade one folder or .zip per student (also Moodle's, Canvas's and Gradescope's downloads) "
        "into OUT: students/<id>/results.json and feedback.md, grades.csv, report.md with plots. "
        "Rerun the same command to resume an interrupted run.")
    grade_class.add_argument("submissions", metavar="SUBMISSIONS", help="the folder (or export .zip) of submissions")
    grade_class.add_argument("--out", metavar="DIR", required=True, help="where results, feedback, grades.csv and report.md go")
    grade_class.add_argument("--jobs", type=int, default=None, help="submissions graded at a time (default: one per CPU)")
    grade_class.add_argument("--exercises", nargs="+", metavar="ID", help="grade only these exercise ids, e.g. 1.1 1.4 (default: all)")
    grade_class.add_argument("--extra-tests", metavar="DIR", help="also grade with the instructor-only test files (test_*.py) in DIR")
    grade_class.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per test (default: 60)")
    grade_class.add_argument("--time-budget", type=float, default=900.0, help="seconds per submission (default: 900)")
    grade_class.add_argument("--force", action="store_true", help="regrade students graded by an earlier run")
    grade_class.add_argument("--max-unpacked-mb", type=float, default=20.0,
                             help="what one student's archives may expand to, in MiB (default: 20)")

    package = commands.add_parser("gradescope-package", help="build the Gradescope autograder zip (instructors)")
    package.add_argument("--out", metavar="ZIP", default="autograder.zip", help="the zip to write (default: autograder.zip)")
    package.add_argument("--extra-tests", metavar="DIR", help="hidden tests (test_*.py) to grade with on Gradescope")

    release = commands.add_parser("release", help="regenerate the stubs in labs/ from solutions/ (instructors)")
    release.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    release.add_argument("--force", action="store_true", help="overwrite labs/ files that hold edits (copies are kept in labs/.backup/)")

    train = commands.add_parser("train", help="train a model headless", add_help=False)
    train.add_argument("recipe", choices=RECIPES)

    download = commands.add_parser("download", help="fetch a dataset into the data folder")
    download.add_argument("dataset", choices=("mnist", "cifar10"))
    download.add_argument("--data-dir", help="folder to fetch into (default: LABS_DATA_DIR or data/)")

    args, rest = parser.parse_known_args(argv)
    if args.command != "train" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    if args.command == "grade":
        from labs.provided.grading import run_grader

        return run_grader(args.exercises, submission=args.submission, json_path=args.json, timeout=args.timeout,
                          verbose=args.verbose, time_budget=args.time_budget, extra_tests=args.extra_tests, shards=args.shards)
    if args.command == "grade-class":
        from labs.provided.classroom import run_grade_class

        return run_grade_class(args.submissions, args.out, args.jobs, args.exercises, args.timeout, args.time_budget,
                               args.extra_tests, args.force, args.max_unpacked_mb)
    if args.command == "gradescope-package":
        from labs.provided.gradescope import run_gradescope_package

        return run_gradescope_package(args.out, args.extra_tests)
    if args.command == "release":
        return _release(check=args.check, force=args.force)
    if args.command == "train":
        recipe = importlib.import_module(f"labs.provided.recipes.{args.recipe}")
        try:
            return recipe.main(rest)
        except NotImplementedError as error:  # an unfinished exercise: say which, not a traceback
            print(f"\nerror: {error}.\nComplete it (check with `python -m labs grade`), "
                  "or train the reference with LABS_IMPL=solutions.", file=sys.stderr)
            return 1
    if args.command == "download":
        from labs.provided.data import DataError, download

        try:
            print(f"{args.dataset} is ready in {download(args.dataset, args.data_dir)}")
        except DataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    raise AssertionError(args.command)


def _release(check: bool, force: bool) -> int:
    from labs.provided.release import REPO_ROOT, ReleaseError, release, stale_files

    try:
        if check:
            stale = stale_files(REPO_ROOT)
            for path in stale:
                print(f"stale: {path.relative_to(REPO_ROOT)} (run `python -m labs release`)")
            return 1 if stale else 0
        changed, backup = release(REPO_ROOT, force=force)
    except ReleaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {path.relative_to(REPO_ROOT)}")
    if backup is not None:
        print(f"kept the replaced files, as they were, in {backup.relative_to(REPO_ROOT)}/")
    print("stubs are up to date" if not changed else f"{len(changed)} file(s) regenerated")
    return 0
