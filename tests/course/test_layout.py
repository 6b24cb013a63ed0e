"""The package's rooms, read from the imports (with `ast`, importing nothing).

    labs/provided/         what a student imports: nothing of the grader or the instructor's tools
    labs/grader/trusted/   never imports labs/grader/worker/ (it names probes, never imports them)
    labs/grader/worker/    never imports labs/grader/trusted/, nor the instructor's tools
    labs/grader/ (the rest: channel, confinement, reaping, catalog) imports neither room
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from labs import REPO_ROOT

LABS = REPO_ROOT / "labs"

# room (a folder under labs/) -> packages its modules must not import
WALLS = {
    "provided": ("labs.grader", "labs.instructor", "labs.cli"),
    "grader/trusted": ("labs.grader.worker", "labs.instructor"),
    "grader/worker": ("labs.grader.trusted", "labs.instructor"),
}
SHARED = ("channel.py", "confinement.py", "reaping.py", "catalog.py", "__init__.py")


def imported_modules(path: Path, root: Path = REPO_ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path` (under `root`), also those inside functions."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _breaches(room: str, forbidden: tuple[str, ...], root: Path = REPO_ROOT) -> list[str]:
    breaches = []
    for path in sorted((root / "labs" / room).rglob("*.py")):
        for line, module in imported_modules(path, root):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                breaches.append(f"{path.relative_to(root)}:{line} imports {module}")
    return breaches


@pytest.mark.parametrize("room", list(WALLS))
def test_a_room_imports_nothing_across_its_walls(room):
    breaches = _breaches(room, WALLS[room])
    assert not breaches, f"labs/{room} must not import {', '.join(WALLS[room])}:\n" + "\n".join(breaches)


def test_the_pieces_both_grader_sides_share_import_neither_side():
    breaches = []
    for name in SHARED:
        path = LABS / "grader" / name
        for line, module in imported_modules(path):
            if module.startswith(("labs.grader.trusted", "labs.grader.worker", "labs.instructor")):
                breaches.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {module}")
    assert not breaches, "\n".join(breaches)


def test_the_import_check_sees_an_import_inside_a_function(tmp_path):
    """The check itself can fail: a late import of the worker side in a trusted module is found."""
    module = tmp_path / "labs" / "grader" / "trusted" / "_layout_probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from labs.grader.worker import probes\n    from ..worker.server import zygote_main\n")
    breaches = _breaches("grader/trusted", WALLS["grader/trusted"], root=tmp_path)
    assert any("_layout_probe.py:2 imports labs.grader.worker" in b for b in breaches), breaches
    assert any("_layout_probe.py:3 imports labs.grader.worker.server" in b for b in breaches), breaches


def test_no_grader_or_instructor_module_is_left_in_the_students_room():
    names = {path.stem for path in (LABS / "provided").glob("*.py")}
    left = names & {"grading", "grading_plugin", "remote", "worker", "sandbox", "channel", "probes", "references",
                    "release", "submissions", "classroom", "gradebook", "gradescope", "cli", "notebooks"}
    assert not left, f"labs/provided/ still holds {sorted(left)}: they belong to labs/grader or labs/instructor"
