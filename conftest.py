"""The `--impl` option of the test suite (see tests/conftest.py for what it does), the header
line that names the implementation under test, and a check of the provided files.

It is declared here, at the repository root, because pytest 9 reads `--impl solutions` with
`solutions` (an existing folder) as a test path and then loads only the conftest files above
that path before parsing options (pytest issue #13913); this one is always among them.
"""

import importlib
import os
import traceback
from pathlib import Path

import pytest

# Read at startup, before pytest_configure sets LABS_IMPL from --impl. Only --impl chooses what the
# graded tests run: an exported LABS_IMPL=solutions once made a plain `pytest` pass on unwritten stubs.
ENVIRONMENT_IMPL = os.environ.get("LABS_IMPL")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        choices=("labs", "solutions"),
        default="labs",
        help="which implementation the graded tests import as `labs.<module>` "
        "(default: labs, your code, whatever LABS_IMPL says)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    os.environ["LABS_IMPL"] = config.getoption("impl")  # `import labs` reads it: the option, not the shell, decides
    if config.getoption("grading_code", default=None) is None:  # not in the grader's test process: it has its own copy, and time counts
        check_provided_files()


def check_provided_files() -> None:
    """Import every module of labs/provided, so that a broken one is named once, with the way
    to restore it, instead of breaking every test file that imports it (tests/course/ among
    them, which students never run). They define functions and constants only: importing them
    has no side effects, and a full run imports them anyway."""
    try:
        import labs
    except SystemExit as error:  # LABS_IMPL names what cannot be used; labs says why, in one line
        raise pytest.UsageError(str(error).removeprefix("error: ")) from None
    root = Path(labs.__file__).resolve().parent.parent
    provided = root / "labs" / "provided"
    for path in sorted(provided.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        try:
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        except Exception as error:
            if isinstance(error, ModuleNotFoundError) and not (error.name or "").startswith("labs"):
                raise pytest.UsageError(
                    f"{path.relative_to(root)} needs the package {error.name}, which is not installed: "
                    "run `pip install -e .` in the course's folder"
                ) from None
            culprit, line = _where(error, path, provided)
            detail = error.msg if isinstance(error, SyntaxError) else error
            raise pytest.UsageError(
                f"the provided file {culprit.relative_to(root)} is broken ({f'line {line}: ' if line else ''}"
                f"{type(error).__name__}: {detail}); you never need to edit it: restore it with `git checkout labs/provided`"
            ) from None


def _where(error: Exception, imported: Path, provided: Path) -> tuple[Path, int | None]:
    """The innermost provided file in the error's traceback, not the one that imported it
    (data.py imports settings.py), and the line there."""
    places = [(str(imported), None), *((f.filename, f.lineno) for f in traceback.extract_tb(error.__traceback__))]
    if isinstance(error, SyntaxError):
        places.append((error.filename or "", error.lineno))
    return [(Path(f).resolve(), n) for f, n in places if provided in Path(f).resolve().parents][-1]


def implementation_line(config: pytest.Config) -> str:
    """Whose code the graded tests run, said so that a green run on the reference is not taken for yours."""
    if config.getoption("impl") == "solutions":
        return "implementation under test: solutions/ (the reference, NOT your code: --impl solutions)"
    line = "implementation under test: labs/ (your code)"
    if ENVIRONMENT_IMPL not in (None, "labs"):
        line += (f"; LABS_IMPL={ENVIRONMENT_IMPL} is set in your environment but ignored here: "
                 "only --impl chooses (--impl solutions tests the reference)")
    return line


def pytest_report_header(config: pytest.Config) -> str:
    return implementation_line(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if config.getoption("impl") == "solutions":  # next to the counts, even with -q: these passes are not yours
        terminalreporter.write_line(implementation_line(config))
