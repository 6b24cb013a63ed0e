"""The grader, tried as a dishonest student would (the attacks in attacks.py).

Every attack is graded from a throwaway copy of this checkout, as `python -m labs grade
--submission DIR --json results.json`, inside a watcher process that adopts whatever the
grader leaves behind. For each: no point it did not deserve, the checkout unchanged,
results.json unchanged seconds after the grader exited, no process left, no SysV segment
left, nothing received by the listeners the attacks aim at, no file left in a scratch folder,
and the grader done within its time budget. The runs start together, two at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs.grader import confinement, reaping
from labs.grader.trusted.sandbox_check import Listeners
from tests.course.fixtures import attacks
from tests.course.fixtures.mutation import REPO_ROOT

ONE_PER_MODULE = ["1.1", "1.4", "2.2", "3.1"]
TIME_BUDGET = 240.0
EXERCISES = {  # which exercises each attack is graded on, and its per-test limit in seconds
    attacks.HANG_AND_IGNORE_ALARMS.name: (["1.4"], 5),
    attacks.PRINT_A_GIGABYTE.name: (["1.4", "1.5"], 10),
    attacks.STRAY_NO_GRAD.name: (["1.3", "1.11", "2.5", "3.1"], 60),
    attacks.READ_SHADOW.name: (["1.1"], 60),
    attacks.FILL_THE_SCRATCH_FOLDER.name: (["1.1"], 60),
    attacks.LEAVE_FILES_WHEN_STOPPED.name: (["1.1"], 120),  # the time budget ends it, not the per-test limit
}
# Graded with a temporary folder of their own (TMPDIR), so that what they leave there is theirs alone.
OWN_TMPDIR = {attacks.FILL_THE_SCRATCH_FOLDER.name, attacks.LEAVE_FILES_WHEN_STOPPED.name}
SYSV_KEY = 0x1AB5_A77A  # the key attacks.PARK_IN_SYSV_SHM uses

WATCHER = r"""
import json, os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from labs.grader import reaping
reaping.become_subreaper()  # what the grader leaves behind is reparented here
start = time.monotonic()
code = subprocess.run(sys.argv[3:], cwd=sys.argv[1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).returncode
elapsed = time.monotonic() - start
results = sys.argv[2]
at_exit = open(results).read() if os.path.exists(results) else None
time.sleep(3)
leftover = reaping.children_of(os.getpid())
reaping.kill_children()
print(json.dumps({"returncode": code, "elapsed": elapsed, "leftover": leftover, "at_exit": at_exit}))
"""


def _copy_checkout(target: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "data", "notebooks", "benchmarks", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info")
    shutil.copytree(REPO_ROOT, target, ignore=ignore)
    return target


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _write_submission(attack: attacks.Attack, checkout: Path, folder: Path, results: Path, targets: dict) -> Path:
    folder.mkdir(parents=True)
    for module in EXERCISE_MODULES:
        source = (checkout / ("labs" if attack.base == "stubs" else "solutions") / f"{module}.py").read_text()
        if module in attack.modules:
            snippet = attack.snippet.format(repo=checkout, results=results, module=module, **targets)
            source = source + "\n" + snippet  # last, so that what it defines replaces the stubs
        if attack is attacks.PRINT_A_GIGABYTE and module == "mlp":
            old, new = attacks.PRINT_A_GIGABYTE_EDIT
            assert source.count(old) == 1, "the printing edit no longer applies to solutions/mlp.py"
            source = source.replace(old, new)
        (folder / f"{module}.py").write_text(source)
    return folder


def _grade(checkout: Path, submission: Path, results: Path, exercises: list[str], timeout: float,
           budget: float = TIME_BUDGET, tmpdir: Path | None = None) -> dict:
    command = [sys.executable, "-m", "labs", "grade", *exercises, "--submission", str(submission), "--json", str(results),
               "--timeout", str(timeout), "--time-budget", str(budget)]
    env = {key: value for key, value in os.environ.items() if key != "LABS_IMPL"}  # as an instructor's shell
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    watched = subprocess.run([sys.executable, "-c", WATCHER, str(checkout), str(results), *command],
                             capture_output=True, text=True, timeout=TIME_BUDGET + 120, env=env)
    assert watched.returncode == 0, f"the watcher failed:\n{watched.stdout}\n{watched.stderr}"
    outcome = json.loads(watched.stdout.strip().splitlines()[-1])
    outcome["results"] = json.loads(results.read_text()) if results.exists() else None
    outcome["results_now"] = results.read_text() if results.exists() else None
    if tmpdir is not None:  # what the run left in its temporary folder, and what the next start's sweep leaves
        outcome["left in tmpdir"] = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*") if p.is_file())
        reaping.sweep_scratch(tmpdir)
        outcome["left after a sweep"] = sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*"))
    return outcome


def _sysv_segments(key: int) -> list[str]:
    """The lines of /proc/sysvipc/shm (what `ipcs -m` lists) for segments with this key."""
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return []
    return [line for line in lines if line.split() and int(line.split()[0]) == key]


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("adversarial")
    checkout = _copy_checkout(base / "checkout")
    before = _fingerprint(checkout)
    listeners = Listeners()  # where SEND_INPUTS_OUT sends what it sees: nothing may arrive
    tmpdirs = []
    jobs = {}
    for number, attack in enumerate(attacks.ATTACKS):
        results = base / f"results-{number}" / "results.json"
        results.parent.mkdir()
        submission = _write_submission(attack, checkout, base / f"submission-{number}", results, listeners.targets())
        exercises, timeout = EXERCISES.get(attack.name, (ONE_PER_MODULE, 60))
        tmpdir = None
        if attack.name in OWN_TMPDIR:  # in /tmp, searchable by the workers' user like /tmp itself
            tmpdir = Path(tempfile.mkdtemp(prefix="labs-adversarial-tmp-"))
            os.chmod(tmpdir, 0o711)
            tmpdirs.append(tmpdir)
        jobs[attack.name] = (checkout, submission, results, exercises, timeout, attack.time_budget or TIME_BUDGET, tmpdir)
    # A hand-out without solutions/ grades the reference (handed in from elsewhere) at full marks.
    handout = _copy_checkout(base / "handout")
    shutil.rmtree(handout / "solutions")
    reference = base / "reference"
    shutil.copytree(REPO_ROOT / "solutions", reference)
    (base / "results-handout").mkdir()
    jobs["handout"] = (handout, reference, base / "results-handout" / "results.json", ONE_PER_MODULE, 60)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(_grade, *job) for name, job in jobs.items()}
            outcomes = {name: future.result() for name, future in futures.items()}
        outcomes["received"] = listeners.received()
    finally:
        listeners.close()
        for tmpdir in tmpdirs:
            shutil.rmtree(tmpdir, ignore_errors=True)
    outcomes["sysv left"] = _sysv_segments(SYSV_KEY)
    outcomes["checkout changed"] = sorted(k for k in set(before) | set(_fingerprint(checkout)) if before.get(k) != _fingerprint(checkout).get(k))
    return outcomes


def _points(results: dict) -> dict[str, tuple[float, float]]:
    points: dict[str, list[float]] = {}
    for test in results["tests"]:
        earned, possible = points.setdefault(test["number"], [0.0, 0.0])
        points[test["number"]] = [earned + test["score"], possible + test["max_score"]]
    return {number: (round(e, 6), round(p, 6)) for number, (e, p) in points.items()}


@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=[a.name for a in attacks.ATTACKS])
def test_an_attack_earns_nothing_changes_nothing_and_leaves_nothing_behind(graded, attack):
    outcome = graded[attack.name]
    assert outcome["returncode"] == 0, f"{attack.name}: the grader should exit 0 (graded), got {outcome['returncode']}"
    assert outcome["results"] is not None, f"{attack.name}: no results.json was written"
    assert outcome["results_now"] == outcome["at_exit"], f"{attack.name}: results.json changed after the grader exited"
    assert not outcome["leftover"], f"{attack.name}: processes outlived the grader: {outcome['leftover']}"
    budget = attack.time_budget or TIME_BUDGET
    assert outcome["elapsed"] < budget + 30, f"{attack.name}: the grader took {outcome['elapsed']:.0f} s, past its budget of {budget:g} s"
    assert not graded["sysv left"], f"SysV shared memory outlived the grader (ipcs -m): {graded['sysv left']}"
    assert not graded["received"], f"a worker reached a listener outside its sandbox: {graded['received']}"
    if attack.name in OWN_TMPDIR:
        theirs = [path for path in outcome["left in tmpdir"] if "labs-attack" in path]
        assert not theirs or not confinement.supported_layers().get("mnt"), \
            f"{attack.name}: files it wrote in its scratch folder reached the disk and stayed: {theirs}"
        assert not outcome["left after a sweep"], f"{attack.name}: left behind in its temporary folder: {outcome['left after a sweep']}"
    if attack.base == "stubs":
        earned = {number: p for number, p in _points(outcome["results"]).items() if p[0] > 0}
        assert not earned, f"{attack.name}: a submission that implements nothing earned points: {earned}"
    assert not graded["checkout changed"], f"the checkout was changed during grading: {graded['checkout changed']}"


def test_reading_etc_shadow_shows_nothing_of_it_in_the_results(graded):
    text = graded[attacks.READ_SHADOW.name]["results_now"] or ""
    assert "STOLEN" not in text, "the submission read /etc/shadow (or /etc/gshadow, /etc/sudoers) and printed it into results.json"


def test_a_480_mb_write_into_the_scratch_folder_stops_at_the_quota(graded):
    outputs = "\n".join(t["output"] for t in graded[attacks.FILL_THE_SCRATCH_FOLDER.name]["results"]["tests"])
    written = [(int(found.group(1)), found.group(2)) for found in re.finditer(r"ATTACK wrote (\d+) bytes, then ([^\n]*)", outputs)]
    quota = confinement.Limits().scratch_bytes
    if confinement.supported_layers().get("mnt"):  # a tmpfs refuses the write: the attack lives to say what it wrote
        assert written, f"the attack said nothing: did it run? {outputs[:500]}"
    # else the zygote's watcher kills the worker mid-write, and it says nothing
    assert all(n <= quota for n, _ in written), f"the submission wrote {written} bytes into its scratch folder, past {quota:,}"
    assert all(stopped != "nothing" for _, stopped in written), f"nothing stopped a 480 MB write: {written}"


def test_a_handout_without_solutions_grades_the_reference_at_full_marks(graded):
    outcome = graded["handout"]
    assert outcome["returncode"] == 0 and outcome["results"] is not None, f"grading in a hand-out failed: {outcome}"
    lost = {number: p for number, p in _points(outcome["results"]).items() if p[0] < p[1]}
    assert not lost, f"the reference lost points when graded in a copy without solutions/: {lost}"


def test_printing_a_gigabyte_per_call_costs_no_other_exercise_its_points(graded):
    points = _points(graded[attacks.PRINT_A_GIGABYTE.name]["results"])
    assert points["1.5"][0] == points["1.5"][1], f"cross-entropy (1.5) lost honest points to softmax's printing: {points}"
    outputs = [t["output"] for t in graded[attacks.PRINT_A_GIGABYTE.name]["results"]["tests"]]
    assert all(len(output) < 100_000 for output in outputs), "printed output should be cut short in the results"


def test_a_stray_set_grad_enabled_false_costs_only_its_own_module(graded):
    points = _points(graded[attacks.STRAY_NO_GRAD.name]["results"])
    lost = {number: p for number, p in points.items() if number != "1.3" and p[0] < p[1]}
    assert not lost, f"torch.set_grad_enabled(False) in basics.py cost other modules points: {lost}"


def test_the_workers_are_confined_on_this_machine():
    """The protections the README promises are there (this CI machine runs Linux with Landlock)."""
    if not confinement.LINUX:
        pytest.skip("Landlock and the child subreaper are Linux features")
    if confinement.landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock: the workers can read what the grader's user can read")
    assert "Landlock" in confinement.describe()
