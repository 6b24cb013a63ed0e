"""A student's loop in the notebooks: edit labs/*.py, run the cell again, see the change.

The pieces that make it work, each checked here:
    the setup cell (second code cell)  autoreload, guarded so that plain Python ignores it
    the Colab cell (first code cell)   on Colab only: clone, `pip install -e`, datasets on Drive
    labs/provided/exercise_cells.py    `with exercise("1.4"):` and `ready("1.4")`, so that Run All
                                       goes through exercises that are not written yet
The kernel test works on a copy of labs/ in a temporary folder, put first on the kernel's
PYTHONPATH: the real labs/ files are never edited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import nbformat
import pytest

from labs import REPO_ROOT
from labs.provided.exercise_cells import COURSE_REPOSITORY, check_from_terminal, exercise, ready, unwritten

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
COLAB_BADGE = "https://colab.research.google.com/github/{org_repo}/blob/main/notebooks/{name}"

# The one edit the kernel test makes to its copy of labs/mlp.py: exercise 1.4's softmax, written.
SOFTMAX_STUB = "raise NotImplementedError('Exercise 1.4 (Softmax and log-softmax): `softmax` in labs/mlp.py is not implemented yet')"
SOFTMAX_WRITTEN = "return torch.softmax(z, dim=dim)"
SOFTMAX_LINE = 'Exercise 1.4 (softmax) is not written yet: write it in labs/mlp.py, then run check("1.4")'


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def colab_cell(path: Path) -> str:
    return code_cells(path)[0]


def setup_cell(path: Path) -> str:
    return code_cells(path)[1]


# ------------------------------------------------------------------ the first two cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_a_notebook_opens_with_the_colab_cell_then_autoreload_seeding_and_check(path):
    colab, setup = colab_cell(path), setup_cell(path)
    assert "def setup_colab(" in colab and '"google.colab" not in sys.modules' in colab, f"{path.name}: the first code cell is not the Colab cell"
    assert "import labs" not in colab and "from labs" not in colab, f"{path.name}: the Colab cell runs before the course is installed; it cannot import it"
    head = setup.split("import", 1)[0]
    for needed in ('run_line_magic("load_ext", "autoreload")', 'run_line_magic("autoreload", "2")', "except NameError"):
        assert needed in head, f"{path.name}: the setup cell should begin with autoreload, guarded for plain Python; {needed!r} missing"
    assert "seed_everything(" in setup and "FAST = fast_mode()" in setup, f"{path.name}: the setup cell should seed and read fast mode"
    assert re.search(r"try:\n    from labs import check\b.*\nexcept ImportError:", setup), f"{path.name}: the setup cell should import check, guarded"


def test_every_notebook_has_the_same_colab_cell():
    cells = {path.name: colab_cell(path) for path in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    differ = [name for name, cell in cells.items() if cell != first]
    assert not differ, f"the Colab cell of {differ} differs from {NOTEBOOKS[0].name}'s; keep one cell, copied"


def test_the_badges_and_the_colab_cells_name_the_course_repository():
    """COURSE_REPOSITORY is the one place; the notebooks repeat it (their first cell cannot import it)."""
    org_repo = COURSE_REPOSITORY.removeprefix("https://github.com/")
    wrong = []
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        first_markdown = next(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
        badge = COLAB_BADGE.format(org_repo=org_repo, name=path.name)
        if f"(https://colab.research.google.com/assets/colab-badge.svg)]({badge})" not in first_markdown:
            wrong.append(f"{path.name}: its first markdown cell has no 'Open in Colab' badge linking to {badge}")
        if f'COURSE_REPOSITORY = "{COURSE_REPOSITORY}"' not in colab_cell(path):
            wrong.append(f"{path.name}: its Colab cell does not set COURSE_REPOSITORY = {COURSE_REPOSITORY!r}")
    if wrong:
        found = sorted({m for path in NOTEBOOKS for m in re.findall(r'github(?:\.com)?/([\w.-]+/[\w.-]+?)(?:/blob|\\?")', path.read_text())} - {org_repo})
        fix = "".join(f"\n  sed -i 's#{old}#{org_repo}#g' notebooks/*.ipynb" for old in found)
        pytest.fail("\n".join(wrong) + (f"\nthe notebooks name {found}; to follow labs/provided/exercise_cells.py:{fix}" if found else ""))


@pytest.mark.slow  # a process that imports torch and the course
def test_the_setup_cells_run_in_plain_python_without_ipython(tmp_path):
    """Outside IPython (a script, `python -c`), the autoreload lines do nothing, and nothing else breaks."""
    program = "\n".join(f"exec(compile({cell!r}, {name!r}, 'exec'), {{}})" for path in NOTEBOOKS for name, cell in
                        (("colab cell of " + path.name, colab_cell(path)), ("setup cell of " + path.name, setup_cell(path))))
    env = {**os.environ, "LABS_FAST": "1", "LABS_IMPL": "labs", "MPLBACKEND": "Agg", "LABS_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the first cells failed in plain Python:\n{done.stderr[-3000:]}"
    assert "autoreload" not in done.stdout + done.stderr, done.stdout + done.stderr


# ------------------------------------------------------------------ the Colab cell, with stand-ins


class Recorder:
    """Stands in for subprocess.run: records each command instead of running it."""

    def __init__(self):
        self.commands: list[list[str]] = []

    def __call__(self, command, check=False, **kwargs):
        self.commands.append([str(part) for part in command])
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def shell(monkeypatch):
    """The Colab cell's `subprocess.run`, recorded; sys.path and LABS_DATA_DIR restored afterwards."""
    recorder = Recorder()
    monkeypatch.setattr(subprocess, "run", recorder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("LABS_DATA_DIR", raising=False)
    return recorder


def run_colab_cell(namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(colab_cell(NOTEBOOKS[0]), "colab cell", "exec"), namespace)
    return namespace


def on_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))


def test_outside_colab_the_first_cell_runs_nothing(shell, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    path_before = list(sys.path)
    run_colab_cell()
    assert shell.commands == [], f"outside Colab the first cell ran {shell.commands}"
    assert sys.path == path_before and "LABS_DATA_DIR" not in os.environ
    assert capsys.readouterr().out == ""


def test_on_colab_the_first_cell_clones_and_installs_the_course(shell, monkeypatch):
    if Path("/content").exists():
        pytest.skip("this machine has a /content folder, as Colab does: the cell would act on it")
    on_colab(monkeypatch)
    run_colab_cell()
    assert shell.commands == [
        ["git", "clone", "--depth", "1", COURSE_REPOSITORY, "/content/cnn-labs"],
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", "/content/cnn-labs"],
    ], shell.commands
    assert sys.path[0] == "/content/cnn-labs", "the course must be importable in the running kernel, not only after a restart"
    assert "LABS_DATA_DIR" not in os.environ, "without Drive mounted, datasets stay in the course's data/ folder"


def test_on_colab_with_drive_mounted_the_datasets_go_to_drive(shell, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    setup_colab = run_colab_cell()["setup_colab"]  # defined; its call does nothing outside Colab
    on_colab(monkeypatch)
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    setup_colab(root=str(tmp_path), run=shell)
    course = str(tmp_path / "cnn-labs")
    assert shell.commands[0][:2] == ["git", "clone"] and shell.commands[0][-2:] == [COURSE_REPOSITORY, course], shell.commands
    assert shell.commands[1][-2:] == ["-e", course] and "pip" in shell.commands[1], shell.commands
    assert os.environ["LABS_DATA_DIR"] == str(tmp_path / "drive" / "MyDrive" / "cnn-labs-data")


def test_on_colab_a_second_run_clones_nothing_and_keeps_a_chosen_data_dir(shell, monkeypatch, tmp_path):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    setup_colab = run_colab_cell()["setup_colab"]
    on_colab(monkeypatch)
    (tmp_path / "cnn-labs").mkdir()
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)
    monkeypatch.setenv("LABS_DATA_DIR", "/somewhere/else")
    setup_colab(root=str(tmp_path), run=shell)
    assert shell.commands == [], f"the course is already there, yet the cell ran {shell.commands}"
    assert sys.path[0] == str(tmp_path / "cnn-labs")
    assert os.environ["LABS_DATA_DIR"] == "/somewhere/else"


# ------------------------------------------------------------------ exercise() and ready()


def stub_error(exercise_id="9.9", title="A made-up exercise (with brackets)", name="made_up", path="labs/made_up.py"):
    return NotImplementedError(f"Exercise {exercise_id} ({title}): `{name}` in {path} is not implemented yet")


def test_every_stub_message_in_labs_is_understood():
    messages = [m for path in sorted((REPO_ROOT / "labs").glob("*.py"))
                for m in re.findall(r"raise NotImplementedError\('(Exercise [^']*)'\)", path.read_text())]
    assert len(messages) >= 20, f"found only {len(messages)} stubs in labs/*.py"
    for message in messages:
        found = unwritten(NotImplementedError(message))
        assert found is not None and message.startswith(f"Exercise {found.id} ") and f"`{found.name}` in {found.path} " in message, message


def test_an_unwritten_exercise_becomes_one_line_and_the_notebook_goes_on(capsys):
    with exercise("test-1"):
        raise stub_error()
    assert capsys.readouterr().out == 'Exercise 9.9 (made_up) is not written yet: write it in labs/made_up.py, then run check("9.9")\n'


def test_a_later_cell_waits_for_the_exercise_and_runs_once_it_is_written(capsys):
    with exercise("test-2"):
        raise stub_error("8.8", name="later")
    capsys.readouterr()
    assert ready("test-2") is False
    assert capsys.readouterr().out == "This cell waits for exercise 8.8 (later): write it in labs/made_up.py, then run the cells above again\n"
    with exercise("test-2"):
        pass  # written now: the cell runs through
    assert ready("test-2") is True and ready("a-label-no-cell-used") is True
    assert capsys.readouterr().out == ""


def test_other_errors_are_shown_in_full():
    with pytest.raises(NotImplementedError, match="not a stub"):
        with exercise("test-3"):
            raise NotImplementedError("not a stub's message")
    with pytest.raises(ValueError):
        with exercise("test-3"):
            raise ValueError("a bug in the student's code")


def test_a_plot_begun_before_the_stub_is_closed():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    with exercise("test-4"):
        plt.figure()
        raise stub_error()
    assert plt.get_fignums() == before, "an empty figure would be shown under the one-line message"


def test_check_without_labs_check_says_how_to_check_from_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("LABS_SKIP_CHECKS", raising=False)
    check_from_terminal("1.4")
    assert "python -m labs grade 1.4" in capsys.readouterr().out
    monkeypatch.setenv("LABS_SKIP_CHECKS", "1")
    check_from_terminal("1.4")
    assert capsys.readouterr().out == "check('1.4') skipped: LABS_SKIP_CHECKS is set\n"


# ------------------------------------------------------------------ the loop, in a real kernel


def outputs(cell) -> str:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_an_edit_to_labs_is_seen_at_the_next_run_of_a_cell(tmp_path, monkeypatch):
    """Run notebook 01's first cells in a kernel, write exercise 1.4 in a copy of labs/, run a cell again."""
    from nbclient import NotebookClient

    shutil.copytree(REPO_ROOT / "labs", tmp_path / "labs", ignore=shutil.ignore_patterns("__pycache__", ".backup"))
    mlp_file = tmp_path / "labs" / "mlp.py"
    source = mlp_file.read_text()
    assert source.count(SOFTMAX_STUB) == 1, "labs/mlp.py no longer holds softmax's stub exactly once: update SOFTMAX_STUB"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.delenv("LABS_IMPL", raising=False)  # the students' code: here, the copy
    monkeypatch.setenv("LABS_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    notebook_path = NOTEBOOK_DIR / "01_backprop_mlp.ipynb"
    probe = 'import labs\nprint("labs from", labs.__file__)\nwith exercise("1.4"):\n    print("softmax:", mlp.softmax(torch.zeros(2)).tolist())'
    after = 'print("ready:", ready("1.4"))'
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in (colab_cell(notebook_path), setup_cell(notebook_path), probe, after, probe, after)]
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index in range(4):
            client.execute_cell(notebook.cells[index], index)
        first, waiting = outputs(notebook.cells[2]), outputs(notebook.cells[3])
        assert f"labs from {tmp_path / 'labs' / '__init__.py'}" in first, f"the kernel imported another labs/: {first}"
        assert SOFTMAX_LINE in first, first
        assert "This cell waits for exercise 1.4 (softmax)" in waiting and "ready: False" in waiting, waiting

        mlp_file.write_text(source.replace(SOFTMAX_STUB, SOFTMAX_WRITTEN))
        later = time.time() + 2
        os.utime(mlp_file, (later, later))  # a newer modification time, whatever the file system's resolution
        for index in (4, 5):
            client.execute_cell(notebook.cells[index], index)
        second, now_ready = outputs(notebook.cells[4]), outputs(notebook.cells[5])
    assert "softmax: [0.5, 0.5]" in second, f"the edit to labs/mlp.py was not seen at the next run of the cell:\n{second}"
    assert "not written yet" not in second and "ready: True" in now_ready, (second, now_ready)
