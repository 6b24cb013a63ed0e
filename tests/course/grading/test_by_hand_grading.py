"""End to end: letting PyTorch do a by-hand exercise earns nothing, through the real grader (issue #19).

test_by_hand.py checks the static reading (labs/grader/trusted/by_hand.py) on snippets; here whole
submissions go through `grade()`, worker processes and all. The cheats come from
tests/course/fixtures/torch_cheats.py: the solutions with every by-hand exercise's block replaced
by a library call, in nine spellings; each of them passes the graded tests when the reading is
switched off (the fixture's docstring records the points), so whatever they lose here is lost to
the reading alone.

Gradings, each once, two at a time (about 3 minutes on two busy cores):

- the solutions, on the by-hand exercises;
- honest alternatives in other styles, on their four exercises;
- the plain cheats in all four modules;
- the eight other spellings, packed four to a submission, one spelling per module. The reading
  never carries a flag from one exercise module to another's exercises, so a pack grades each of
  its spellings as if it were alone; every spelling is also read whole, in-process, below.

The cheat submissions are also graded on a few exercises that are not by hand (OTHERS), which are
the solutions there, to show that a flag costs the by-hand exercise and nothing else.
"""

from __future__ import annotations

import re
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs.grader.trusted.by_hand import RULES, check_submission
from labs.grader.trusted.runner import grade
from tests.course.fixtures.torch_cheats import (
    BY_HAND, CHEAT_MARK, COVERS, SPELLINGS, cheated_functions, copy_solutions, splice_solutions, torch_submission,
)

pytestmark = pytest.mark.slow

OTHERS = ["1.3", "1.9", "1.10", "1.12", "2.8", "3.1"]  # not by hand, one module each at least, cheap to grade
PACKS = {  # module -> spelling: every spelling but plain graded once, on the module it shows best in
    "pack-1": {"basics": "dunder", "mlp": "alias", "conv": "torch_ops", "models": "getattr"},
    "pack-2": {"basics": "lambda_partial", "mlp": "importlib", "conv": "probe_patch", "models": "helper"},
}
GRADED_IN = {"plain": ("plain", EXERCISE_MODULES)} | {  # spelling -> (grading, the modules it was graded in)
    spelling: (pack, (module,)) for pack, modules in PACKS.items() for module, spelling in modules.items()
}
HONEST_MARK = "# <- honest alternative"

# ---------------------------------------------------------------- honest alternatives, in full
# Each handles every option its exercise's tests try (tuples, "same" padding, dilation, groups,
# padding -inf or 0); the rest of the submission is the solutions.

HONEST = {
    "softmax": """\
m = torch.max(z, dim=dim, keepdim=True).values  # (..., 1, ...): the stable shift
e = torch.exp(z - m)  # (..., C, ...), every entry in (0, 1]
return e / torch.sum(e, dim=dim, keepdim=True)  # (..., C, ...) / (..., 1, ...)""",
    "log_softmax": """\
shifted = z - torch.max(z, dim=dim, keepdim=True).values  # (..., C, ...) - (..., 1, ...)
return shifted - torch.log(torch.sum(torch.exp(shifted), dim=dim, keepdim=True))  # (..., C, ...) - (..., 1, ...)""",
    "conv2d": """\
N, C_in = x.shape[:2]
C_out, _, kH, kW = w.shape
(sH, sW), (dH, dW) = stride, dilation
if padding == "same":  # the odd zero of an even total goes bottom / right, as in F.conv2d
    th, tw = dH * (kH - 1), dW * (kW - 1)
    top, left, bottom, right = th // 2, tw // 2, th - th // 2, tw - tw // 2
else:
    (top, left), (bottom, right) = padding, padding
x = F.pad(x, (left, right, top, bottom)).contiguous()  # (N, C_in, H_pad, W_pad)
sN, sC, sY, sX = x.stride()
windows = x.as_strided(
    (N, groups, C_in // groups, H_out, W_out, kH, kW),
    (sN, sC * (C_in // groups), sC, sY * sH, sX * sW, sY * dH, sX * dW),
)  # (N, G, C_in/G, H_out, W_out, kH, kW), a view: every tap of every window
kernels = w.reshape(groups, C_out // groups, C_in // groups, kH, kW)  # (G, C_out/G, C_in/G, kH, kW)
out = torch.einsum("ngchwkl,gockl->ngohw", windows, kernels).reshape(N, C_out, H_out, W_out)
if b is not None:
    out = out + b.view(1, C_out, 1, 1)  # (N, C_out, H_out, W_out) + (1, C_out, 1, 1)
return out""",
    "max_pool2d": """\
(kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
x = F.pad(x, (pW, pW, pH, pH), value=-math.inf).contiguous()  # (N, C, H_pad, W_pad)
N, C, H_pad, W_pad = x.shape
H_out, W_out = (H_pad - kH) // sH + 1, (W_pad - kW) // sW + 1
sN, sC, sY, sX = x.stride()
windows = x.as_strided((N, C, H_out, W_out, kH, kW), (sN, sC, sY * sH, sX * sW, sY, sX))  # a view
return windows.amax(dim=(-2, -1))  # (N, C, H_out, W_out)""",
    "max_pool2d_backward": """\
(kH, kW), (sH, sW), (pH, pW) = kernel, stride, padding
N, C, H, W = x.shape
H_out, W_out = out_shape
x_pad = F.pad(x, (pW, pW, pH, pH), value=-math.inf).contiguous()  # (N, C, H_pad, W_pad)
H_pad, W_pad = x_pad.shape[2:]
sN, sC, sY, sX = x_pad.stride()
windows = x_pad.as_strided((N, C, H_out, W_out, kH, kW), (sN, sC, sY * sH, sX * sW, sY, sX))  # a view
first = windows.reshape(N, C, H_out, W_out, kH * kW).argmax(dim=-1)  # (N, C, H_out, W_out): the first maximum
rows = torch.arange(H_out, device=x.device)[:, None] * sH + first // kW  # (N, C, H_out, W_out)
cols = torch.arange(W_out, device=x.device)[None, :] * sW + first % kW  # (N, C, H_out, W_out)
index = (rows * W_pad + cols).reshape(N * C, H_out * W_out)  # (N*C, H_out*W_out) into the flat padded image
dx_pad = dout.new_zeros(N * C, H_pad * W_pad).index_put_(
    (torch.arange(N * C, device=x.device)[:, None].expand_as(index), index), dout.reshape(N * C, -1), accumulate=True
)  # (N*C, H_pad*W_pad): overlapping windows add up
return dx_pad.view(N, C, H_pad, W_pad)[:, :, pH : pH + H, pW : pW + W]  # (N, C, H, W)""",
    "channel_window_sum": """\
half, channels = size // 2, t.shape[1]
padded = F.pad(t, (0, 0, 0, 0, half + 1, half))  # (N, 1 + C + 2 half, H, W): one more zero in front
running = padded.cumsum(dim=1)  # (N, C + size, H, W): running[:, i] sums padded[:, :i + 1]
return running[:, size:] - running[:, :channels]  # (N, C, H, W): the window of c is running[c + size] - running[c]""",
}
HONEST_EXERCISES = ["1.4", "2.4", "2.6", "4.2"]


def honest_submission(folder: Path) -> Path:
    return splice_solutions(folder, HONEST, mark=HONEST_MARK)


def packed_submission(folder: Path, pack: dict[str, str]) -> Path:
    """Each module from the cheat submission of its own spelling."""
    folder.mkdir(parents=True)
    for module, spelling in pack.items():
        source = torch_submission(folder.parent / f"{folder.name}-{spelling}", spelling) / f"{module}.py"
        (folder / f"{module}.py").write_text(source.read_text())
    return folder


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    """Every grading the tests below read, run two at a time: {name: (folder, report)}."""
    base = tmp_path_factory.mktemp("by-hand-grading")
    jobs = {
        "solutions": (copy_solutions(base / "solutions"), list(BY_HAND)),
        "honest": (honest_submission(base / "honest"), HONEST_EXERCISES),
        "plain": (torch_submission(base / "plain", "plain"), [*BY_HAND, *OTHERS]),
        **{name: (packed_submission(base / name, pack), [*BY_HAND, *OTHERS]) for name, pack in PACKS.items()},
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(grade, folder, exercises, timeout=300) for name, (folder, exercises) in jobs.items()}
        return {name: (jobs[name][0], future.result()) for name, future in futures.items()}


def _points(results) -> str:
    return ", ".join(f"{r.exercise.id} {r.earned:g}/{r.possible:g}" for r in results)


def _graded_exercises(spelling: str) -> list[str]:
    _, modules = GRADED_IN[spelling]
    return [ex for ex in COVERS[spelling] if RULES[ex].module in modules]


# ---------------------------------------------------------------- what keeps its points


def test_the_solutions_keep_full_marks_on_every_by_hand_exercise(graded):
    _, report = graded["solutions"]
    results = report.by_id()
    for exercise in BY_HAND:
        result = results[exercise]
        assert not result.flags, f"the reference solution of {exercise} was flagged: {result.flags}"
        assert result.possible > 0 and result.earned == pytest.approx(result.possible), (
            f"the reference solution of {exercise} earned {result.earned:g}/{result.possible:g}: "
            f"{result.problems()[:1]}"
        )


def test_honest_alternatives_keep_full_marks(graded):
    """conv2d by as_strided and einsum, softmax by max, exp and sum, max pooling by as_strided and
    amax (index_put_ for the gradient), the LRN's window sum by cumsum: other styles, no library op."""
    folder, report = graded["honest"]
    for function in HONEST:
        module = next(RULES[ex].module for ex in RULES if function in RULES[ex].functions)
        assert f"{HONEST_MARK}" in (folder / f"{module}.py").read_text(), f"the honest {function} was not spliced in"
    results = report.by_id()
    for exercise in HONEST_EXERCISES:
        result = results[exercise]
        assert not result.flags, f"an honest alternative of {exercise} was flagged (a false positive): {result.flags}"
        assert result.possible > 0 and result.earned == pytest.approx(result.possible), (
            f"the honest alternative of {exercise} earned {result.earned:g}/{result.possible:g}: {result.problems()[:1]}"
        )


@pytest.mark.parametrize("grading", ["plain", *PACKS])
def test_exercises_that_are_not_by_hand_keep_their_points_beside_the_cheats(graded, grading):
    _, report = graded[grading]
    results = report.by_id()
    for exercise in OTHERS:
        result = results[exercise]
        assert not result.flags, f"{grading}: exercise {exercise} is not by hand, yet it was flagged: {result.flags}"
        assert result.possible > 0 and result.earned == pytest.approx(result.possible), (
            f"{grading}: exercise {exercise} (the solution) earned {result.earned:g}/{result.possible:g}: {result.problems()[:1]}"
        )


# ---------------------------------------------------------------- what loses them


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_cheats_earn_at_most_a_tenth_of_the_by_hand_points(graded, spelling):
    grading, modules = GRADED_IN[spelling]
    _, report = graded[grading]
    results = [report.by_id()[ex] for ex in _graded_exercises(spelling)]
    earned, possible = sum(r.earned for r in results), sum(r.possible for r in results)
    assert possible > 0, f"{spelling}: nothing graded in {modules}"
    assert earned <= 0.1 * possible, (
        f"{spelling} ({grading}, {'/'.join(modules)}): the cheats earned {earned:g} of {possible:g} by-hand points: "
        f"{_points(results)}"
    )


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_flagged_exercise_says_no_points_and_names_a_line_of_the_cheat(graded, spelling):
    grading, _ = GRADED_IN[spelling]
    folder, report = graded[grading]
    for exercise in _graded_exercises(spelling):
        result = report.by_id()[exercise]
        if not result.flags:
            continue  # test_cheats_earn_at_most_a_tenth... says how much that costs
        assert result.earned == 0, f"{spelling}: {exercise} was flagged but earned {result.earned:g}"
        first = result.problems()[0]
        assert first.startswith(f"no points: exercise {exercise} "), f"{spelling}: {exercise}'s first line is {first!r}"
        places = [re.search(r" at (\w+\.py):(\d+); ", flag) for flag in result.flags]
        assert all(places), f"{spelling}: a flag of {exercise} names no file and line: {result.flags}"
        assert places[0].group(0).strip(" ;") in first, f"{spelling}: {exercise}'s first line {first!r} names no line"
        lines = {(m.group(1), int(m.group(2))): (folder / m.group(1)).read_text().splitlines()[int(m.group(2)) - 1] for m in places}
        assert any(CHEAT_MARK in text for text in lines.values()), (
            f"{spelling}: no flag of {exercise} names a line of the cheat: " + "; ".join(f"{f}:{n}: {t.strip()}" for (f, n), t in lines.items())
        )


# ---------------------------------------------------------------- every spelling read whole (in-process, milliseconds)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_reading_flags_every_cheat_of_every_spelling_in_every_module(tmp_path, spelling):
    """The gradings above see each spelling in one module; here each is read in all four. An exercise
    listed in the failure is a way around the reading: the code shown got through."""
    folder = torch_submission(tmp_path / spelling, spelling)
    files = {m: ((folder / f"{m}.py").read_text(), f"{m}.py") for m in EXERCISE_MODULES}
    flags = check_submission(files)
    missed = {}
    for exercise, functions in cheated_functions(spelling).items():
        text = files[RULES[exercise].module][0].splitlines()
        on_a_cheat = [f for f in flags.get(exercise, []) if CHEAT_MARK in text[f.line - 1]]
        if not on_a_cheat:
            cheat = "\n".join(line for line in text if CHEAT_MARK in line)
            missed[exercise] = f"{', '.join(functions)}; the module's cheat lines:\n{textwrap.indent(cheat, '    ')}"
    assert not missed, f"{spelling}: not flagged on a line of the cheat:\n" + "\n".join(f"{ex}: {why}" for ex, why in missed.items())
