"""The grade report: what the trusted side makes of the test processes' records.

One `GradeReport` per submission: its exercises, each with its tests' outcomes. It prints as
the table students and instructors read, and writes Gradescope's results.json
(https://gradescope-autograders.readthedocs.io/en/latest/specs/), so that format lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labs.grader import confinement
from labs.grader.catalog import Exercise
from labs.grader.text import printable

HIDDEN_PREFIX = "test_hidden_"  # file name prefix of instructor-only tests in the trusted workspace


@dataclass
class TestResult:
    nodeid: str
    function: str
    exercise: str
    weight: float
    outcome: str = "failed"
    message: str = "not run"
    output: str = ""
    where: str = ""  # the student's line where their code raised: "labs/mlp.py:115: e = torch.exp(...)"
    seconds: float = 0.0  # how long the test ran (setup, call and teardown)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def hidden(self) -> bool:
        """An instructor-only test (`--extra-tests`): its code, inputs and expected values stay secret."""
        return self.function.startswith(HIDDEN_PREFIX)

    @property
    def name(self) -> str:
        return "hidden test" if self.hidden else self.function.split("::")[-1]


@dataclass
class ExerciseResult:
    exercise: Exercise
    tests: list[TestResult] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)  # why a by-hand exercise earns nothing (trusted/by_hand.py)

    @property
    def possible(self) -> float:
        return sum(test.weight for test in self.tests)

    @property
    def earned(self) -> float:
        if self.flags:
            return 0.0
        return sum(test.weight for test in self.tests if test.passed)

    @property
    def failures(self) -> list[TestResult]:
        """The failed tests, public ones first: a hidden failure never hides an informative public one."""
        failed = [test for test in self.tests if not test.passed]
        return [test for test in failed if not test.hidden] + [test for test in failed if test.hidden]

    @property
    def first_failure(self) -> TestResult | None:
        return next(iter(self.failures), None)

    def part(self, hidden: bool) -> ExerciseResult:
        """This exercise with only its hidden tests, or only its public ones."""
        return ExerciseResult(self.exercise, [test for test in self.tests if test.hidden == hidden], self.flags)

    def problems(self, verbose: bool = False) -> list[str]:
        """What the student should read first: the by-hand flags, the first public failure (every
        failure if verbose), then how many hidden tests failed and what they were worth."""
        lines = [f"no points: {flag}" for flag in self.flags]
        public = [test for test in self.failures if not test.hidden]
        hidden = [test for test in self.failures if test.hidden]
        for test in public[: None if verbose else 1]:
            lines += _describe(test).splitlines()
        if hidden:
            lost = sum(test.weight for test in hidden)
            lines.append(f"{len(hidden)} hidden test{'s' if len(hidden) != 1 else ''} failed (worth {_fmt(lost)} "
                         f"point{'s' if lost != 1 else ''}; hidden tests show no details)")
        return lines


@dataclass
class GradeReport:
    source: str
    exercises: list[ExerciseResult]
    confinement: dict = field(default_factory=dict)  # what the workers applied, as the first one reported it
    seconds: float = 0.0  # how long grading took, start to end
    public_seconds: float = 0.0  # until every public result was recorded, before the hidden tests ran

    @property
    def score(self) -> float:
        return sum(result.earned for result in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(result.possible for result in self.exercises)

    def by_id(self) -> dict[str, ExerciseResult]:
        return {result.exercise.id: result for result in self.exercises}

    def table(self, verbose: bool = False) -> str:
        """One row per exercise (id, title, points earned of possible), then its first failure in full."""
        lines = [f"Grading {self.source}", f"({describe_applied(self.confinement)})", "",
                 f"  {'id':<5} {'exercise':<44} {'points':>9}"]
        for result in self.exercises:
            points = f"{_fmt(result.earned)}/{_fmt(result.possible)}"
            lines.append(f"  {result.exercise.id:<5} {_clip(result.exercise.title, 44):<44} {points:>9}")
            if not result.tests:
                lines.append(f"{'':8}no tests found for this exercise")
            lines += [f"{'':8}{line}" for line in result.problems(verbose)]
        percent = 100 * self.score / self.max_score if self.max_score else 0.0
        lines += ["", f"Total: {_fmt(self.score)} / {_fmt(self.max_score)} points ({percent:.0f}%)"]
        return "\n".join(lines)

    def public_part(self) -> GradeReport:
        """The report without its hidden tests: what a student may see before grades are published."""
        return GradeReport(self.source, [result.part(hidden=False) for result in self.exercises], self.confinement,
                           self.public_seconds, self.public_seconds)

    def gradescope(self) -> dict:
        """Gradescope's results.json: one entry per exercise, and one more for its hidden tests.

        An exercise's entry carries its public tests' points, its status and its first failure; its
        hidden tests' entry is shown only when the grades are published (`after_published`), and
        the output above the entries is the public part's table, so that nothing of the hidden
        tests shows before then, not even their time. `extra_data` holds what class grading reads back: the first
        failure apart from its text, how many tests failed and what they were worth.
        """
        entries = []
        for result in self.exercises:
            for hidden in (False, True):
                part = result.part(hidden)
                if part.tests or (not hidden and not result.tests):
                    entries.append(_gradescope_entry(part, hidden))
        public = self.public_part()
        output = public.table()
        if any(test.hidden for result in self.exercises for test in result.tests):
            output += ("\n\nHidden tests were graded too: the table above counts only the public tests, and the "
                       "hidden ones' results show here when the grades are published.")
        return {
            "score": round(self.score, 4),
            "max_score": round(self.max_score, 4),
            # the public part's seconds: a submission that slept by what a hidden test handed it would
            # read the hidden input back from the whole run's time
            "execution_time": round(self.public_seconds or self.seconds, 3),
            "output": output,
            "output_format": "text",  # shown as plain text: a submission's "<img onerror=...>" stays characters
            "test_output_format": "text",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": entries,
        }


def _gradescope_entry(part: ExerciseResult, hidden: bool) -> dict:
    """One entry of results.json: an exercise's public tests, or its hidden ones."""
    exercise = part.exercise
    failures = part.failures
    first = failures[0] if failures else None
    passed = not part.flags and not failures and bool(part.tests)
    lost = sum(test.weight for test in failures)
    if hidden:
        count = len(part.tests)
        if part.flags:
            output = "\n".join(part.problems())
        elif not failures:
            output = f"{_tests(count, 'hidden')} passed"
        else:
            output = (f"{len(failures)} of {count} hidden test{'s' if count != 1 else ''} failed (worth {_fmt(lost)} "
                      f"point{'s' if lost != 1 else ''}; hidden tests show no details)")
    elif passed:
        output = f"{_tests(len(part.tests))} passed"
    else:
        output = "\n".join(part.problems()) or "no tests found for this exercise"
        if len(failures) > 1:
            output += (f"\n({len(failures) - 1} more test{'s' if len(failures) > 2 else ''} failed: "
                       f"`python -m labs grade {exercise.id} --verbose` on your copy shows them all)")
    if part.flags:
        message = "no points: " + "; ".join(part.flags)
    else:
        message = _describe(first).split(": ", 1)[-1] if first and not hidden else ""
    return {
        "name": f"Exercise {exercise.id}: {exercise.title}" + (" (hidden tests)" if hidden else ""),
        "number": exercise.id,
        "score": round(part.earned, 6),
        "max_score": round(part.possible, 6),
        "status": "passed" if passed else "failed",
        "output": printable(output),
        "output_format": "text",
        "visibility": "after_published" if hidden else "visible",
        "extra_data": {
            "exercise": exercise.id,
            "hidden": hidden,
            "tests": len(part.tests),
            "failed": len(failures),
            "failed_points": round(lost, 6),
            "execution_time": round(sum(test.seconds for test in part.tests), 3),
            "first_failure": None if first is None and not part.flags else
                             {"test": first.name if first else "", "message": printable(message)},  # a hidden test's name is "hidden test"
        },
    }


def describe_applied(applied: dict) -> str:
    """One line on the confinement the workers applied (their own record); what the machine offers if none came."""
    if not applied:
        return confinement.describe()
    parts = ["own process group", "resource limits"]
    if applied.get("uid") not in (None, 0) and "user" not in applied.get("namespaces", []):
        parts.append(f"unprivileged user {applied['uid']}")
    if applied.get("namespaces"):
        parts.append("own " + ", ".join(str(n) for n in applied["namespaces"]) + " namespaces")
    if applied.get("view"):
        parts.append("a read-only view without the checkout")
    capabilities = applied.get("capabilities") or {}
    if capabilities and not any(capabilities.values()):
        parts.append("no capabilities")
    if applied.get("seccomp"):
        parts.append("seccomp")
    landlock = applied.get("landlock") or {}
    if landlock.get("abi"):
        parts.append(f"Landlock v{landlock['abi']}")
    quota = (applied.get("scratch") or {}).get("quota_bytes")
    if quota:
        parts.append(f"scratch quota {quota // 2**20} MiB")
    missing = applied.get("missing") or {}
    text = "the code ran in confined worker processes: " + ", ".join(parts)
    if missing:
        text += "; missing on this machine: " + ", ".join(f"{layer} ({why})" for layer, why in list(missing.items())[:6])
    return printable(text)


def _tests(count: int, kind: str = "") -> str:
    """(3, "hidden") -> "all 3 hidden tests", (1, "hidden") -> "the hidden test"."""
    kind = f"{kind} " if kind else ""
    return f"the {kind}test" if count == 1 else f"all {count} {kind}tests"


def _fmt(points: float) -> str:
    return f"{points:.0f}" if abs(points - round(points)) < 1e-9 else f"{points:.2f}"


def _describe(test: TestResult) -> str:
    """"test_name: what went wrong", the whole message (it may span lines), and the student's line
    when their code raised. Control characters from the student's text are dropped, and each line
    of the message after its first is indented under it: no line of a student's message can pass
    for one of the grader's ("all tests passed")."""
    stub = test.where.split(": ", 1)[-1].startswith(("raise NotImplementedError", "raise ImportError"))  # says it already
    where = f"\n  at {printable(test.where, newlines=False)}" if test.where and not stub else ""
    message = printable(test.message.strip()).replace("\n", "\n  ")
    return f"{test.name}: {message}{where}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
