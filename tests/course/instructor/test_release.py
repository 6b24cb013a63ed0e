"""Exercises are written once: the stubs in labs/ are generated from solutions/ and kept in sync."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs import cli
from labs.grader.catalog import load_catalog
from labs.instructor.release import REPO_ROOT, ReleaseError, generate, make_stub, release, stale_files

CATALOG = load_catalog()


def _course_copy(root: Path) -> Path:
    """solutions/ and labs/ copied under `root`, so that release never touches the real labs/."""
    for folder in ("solutions", "labs"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", ".backup"))
    return root


def _write_my_work(path: Path) -> str:
    """A student's first exercise written into a stub; returns the file's new text."""
    text = path.read_text().replace("    raise NotImplementedError", "    return None  # my work\n    raise NotImplementedError", 1)
    path.write_text(text)
    return text


def _functions(path: Path) -> dict[str, ast.FunctionDef]:
    """Every function and method of a module, by qualified name."""
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                if isinstance(child, ast.FunctionDef):
                    found[prefix + child.name] = child
                visit(child, prefix + child.name + ".")

    visit(ast.parse(path.read_text()), "")
    return found


def test_committed_stubs_and_catalog_match_the_solutions():
    stale = [str(path.relative_to(REPO_ROOT)) for path in stale_files()]
    assert not stale, f"these generated files are out of date: {stale}; run `python -m labs release`"


def test_every_exercise_module_has_exercises():
    modules = {exercise.module for exercise in CATALOG}
    assert modules == set(EXERCISE_MODULES), f"modules without exercises: {set(EXERCISE_MODULES) - modules}"


@pytest.mark.parametrize("exercise", CATALOG, ids=[e.id for e in CATALOG])
def test_each_stub_raises_not_implemented_error_naming_its_exercise(exercise):
    stubs = _functions(REPO_ROOT / "labs" / f"{exercise.module}.py")
    for name in exercise.functions:
        raises = [node for node in ast.walk(stubs[name]) if isinstance(node, ast.Raise)]
        messages = [
            node.exc.args[0].value
            for node in raises
            if isinstance(node.exc, ast.Call) and getattr(node.exc.func, "id", "") == "NotImplementedError"
        ]
        assert any(m.startswith(f"Exercise {exercise.id} ") for m in messages), (
            f"labs/{exercise.module}.py:{name} should raise NotImplementedError('Exercise {exercise.id} ...'), found {messages}"
        )


@pytest.mark.parametrize("module", EXERCISE_MODULES)
def test_stubs_keep_every_signature_and_docstring(module):
    solution, stub = _functions(REPO_ROOT / "solutions" / f"{module}.py"), _functions(REPO_ROOT / "labs" / f"{module}.py")
    inside_solutions = {name for name in solution.keys() - stub.keys() if "." in name and name.rsplit(".", 1)[0] in stub}
    assert solution.keys() - inside_solutions == stub.keys(), f"labs/{module}.py and solutions/{module}.py define different functions"
    for name, node in stub.items():
        assert ast.unparse(node.args) == ast.unparse(solution[name].args), f"{module}.{name}: the stub's signature differs"
        assert ast.get_docstring(node) == ast.get_docstring(solution[name]), f"{module}.{name}: the stub's docstring differs"


def test_release_refuses_to_overwrite_a_students_work(tmp_path):
    _course_copy(tmp_path)
    student_file = tmp_path / "labs" / "basics.py"
    my_work = _write_my_work(student_file)
    (tmp_path / "solutions" / "basics.py").write_text((tmp_path / "solutions" / "basics.py").read_text() + "\n# a new line\n")
    with pytest.raises(ReleaseError, match="labs/basics.py"):
        release(tmp_path)
    assert student_file.read_text() == my_work
    assert not (tmp_path / "labs" / ".backup").exists(), "a refused release should write nothing"
    changed, backup = release(tmp_path, force=True)
    assert student_file.read_text() == generate(tmp_path)[0][student_file]
    assert (backup / "basics.py").read_text() == my_work, "release --force lost the student's work"


def test_release_keeps_a_dated_copy_of_every_file_it_overwrites(tmp_path):
    _course_copy(tmp_path)
    (tmp_path / "solutions" / "mlp.py").write_text((tmp_path / "solutions" / "mlp.py").read_text() + "\n# a new line\n")
    before = {path: path.read_text() for path in (tmp_path / "labs").rglob("*") if path.is_file()}
    changed, backup = release(tmp_path)
    assert backup.parent == tmp_path / "labs" / ".backup" and backup.name[:4].isdigit(), f"backup folder {backup}"
    for path in changed:
        kept = backup / path.relative_to(tmp_path / "labs")
        assert kept.read_text() == before[path], f"no copy of {path.relative_to(tmp_path)} in {backup}"
    assert release(tmp_path) == ([], None), "a release that changes nothing should keep no copies"


def test_release_command_explains_its_refusal_to_a_student_and_says_where_forced_copies_are(tmp_path, monkeypatch, capsys):
    """The issue's scenario: a student runs `release`, then `release --force`, on edited mlp.py and conv.py."""
    monkeypatch.setattr("labs.instructor.release.REPO_ROOT", _course_copy(tmp_path))
    work = {name: _write_my_work(tmp_path / "labs" / name) for name in ("mlp.py", "conv.py")}

    assert cli.main(["release"]) == 1
    refusal = capsys.readouterr().err
    assert "labs/mlp.py and labs/conv.py" in refusal and "your edits are untouched" in refusal, refusal
    assert "Students never need to run it" in refusal, refusal
    assert all((tmp_path / "labs" / name).read_text() == text for name, text in work.items())

    assert cli.main(["release", "--force"]) == 0
    report = capsys.readouterr().out
    backups = list((tmp_path / "labs" / ".backup").iterdir())
    assert len(backups) == 1 and f"labs/.backup/{backups[0].name}/" in report, report
    for name, text in work.items():
        assert (backups[0] / name).read_text() == text, f"release --force kept no copy of the student's {name}"
        assert (tmp_path / "labs" / name).read_text() != text


def test_release_updates_untouched_stubs_without_force(tmp_path):
    _course_copy(tmp_path)
    (tmp_path / "solutions" / "basics.py").write_text((tmp_path / "solutions" / "basics.py").read_text() + "\n# a new line\n")
    changed, _ = release(tmp_path)
    assert [p.name for p in changed] == ["basics.py"]
    assert "# a new line" in (tmp_path / "labs" / "basics.py").read_text()


def test_a_block_becomes_todo_hints_and_a_raise():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        "    # BEGIN SOLUTION 9.1: Doubling\n"
        "    # HINT: multiply by two.\n"
        "    return 2 * x\n"
        "    # END SOLUTION\n"
    )
    stub, exercises = make_stub(source, "demo", {})
    body = stub.split('"""Doc."""\n')[1]
    assert body == (
        "    # TODO Exercise 9.1 (Doubling): implement `f`.\n"
        "    # HINT: multiply by two.\n"
        "    raise NotImplementedError('Exercise 9.1 (Doubling): `f` in labs/demo.py is not implemented yet')\n"
    )
    assert [(e.id, e.title, e.functions) for e in exercises] == [("9.1", "Doubling", ["f"])]


@pytest.mark.parametrize(
    "source, problem",
    [
        ("def f():\n    # BEGIN SOLUTION 9.1: T\n    pass\n", "never closed"),
        ("def f():\n    # BEGIN SOLUTION 9.1\n    pass\n    # END SOLUTION\n", "needs a title"),
        ("def f():\n    pass\n    # END SOLUTION\n", "without BEGIN"),
        ("# BEGIN SOLUTION 9.1: T\nx = 1\n# END SOLUTION\n", "inside a function"),
    ],
)
def test_malformed_markers_are_reported_with_their_line(source, problem):
    with pytest.raises(ReleaseError, match=problem):
        make_stub(source, "demo", {})
