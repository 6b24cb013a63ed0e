"""The similarity report: copies are found, honest work and untouched stubs are not, and students' strings stay inert.

The submissions are realistic: the stubs of labs/mlp.py and labs/conv.py with their
`raise NotImplementedError(...)` replaced, as a student does it, by
- the reference bodies of solutions/ (student "ref");
- those bodies renamed and stripped of comments, as a copier disguises them ("copy");
- an independent honest solution of the same exercises, written here differently (loops where
  the reference vectorizes, other helpers, other operations), checked below to work ("honest");
- the honest solution with exercise 1.11 and 2.3 taken from the reference and disguised ("partial");
- the untouched stubs, twice ("stub-1", "stub-2").
Everyone also hands in basics.py and models.py untouched.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from labs.instructor import similarity
from labs.instructor.similarity import Pair, find_similar, markdown_text, write_similarity_report

ROOT = Path(__file__).resolve().parents[3]
MODULES = ("basics", "mlp", "conv", "models")


def starter(module: str) -> str:
    return (ROOT / "labs" / f"{module}.py").read_text(encoding="utf-8")


def reference_bodies(module: str) -> dict[str, str]:
    """{function: its lines between BEGIN SOLUTION and END SOLUTION} in solutions/<module>.py, hints left out."""
    source = (ROOT / "solutions" / f"{module}.py").read_text(encoding="utf-8")
    bodies = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            inside, kept = False, []
            for line in source.splitlines()[node.lineno - 1 : node.end_lineno]:
                if "# BEGIN SOLUTION" in line or "# END SOLUTION" in line:
                    inside = "BEGIN" in line
                elif inside and "# HINT" not in line:
                    kept.append(line)
            if kept:
                bodies[node.name] = textwrap.dedent("\n".join(kept))
    return bodies


def fill(stub: str, bodies: dict[str, str], imports: str = "") -> str:
    """The stub with each named function's `raise NotImplementedError(...)` replaced by its body."""
    lines = stub.splitlines()
    replacements = []
    for node in ast.walk(ast.parse(stub)):
        if isinstance(node, ast.FunctionDef) and node.name in bodies:
            for statement in node.body:
                if isinstance(statement, ast.Raise) and "NotImplementedError" in ast.unparse(statement):
                    body = textwrap.indent(textwrap.dedent(bodies[node.name]).strip("\n"), " " * statement.col_offset)
                    replacements.append((statement.lineno - 1, statement.end_lineno, body.splitlines()))
    assert len(replacements) == len(bodies), f"stubs not found for {sorted(bodies)}"
    for start, end, new in sorted(replacements, reverse=True):
        lines[start:end] = new
    text = "\n".join(lines) + "\n"
    return text.replace("\nimport torch\n", f"\n{imports}\nimport torch\n", 1) if imports else text


def disguise(source: str, renames: dict[str, str]) -> str:
    """A copy as a copier makes it: names renamed (not attributes: `x.exp()` stays), every comment dropped."""
    original = source.splitlines()
    lines = list(original)
    edits = []  # (row, start column, end column, replacement), applied right to left
    previous = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            edits.append((tok.start[0], tok.start[1], len(lines[tok.start[0] - 1]), ""))
        elif tok.type == tokenize.NAME and tok.string in renames and not (previous and previous.string == "."):
            edits.append((tok.start[0], tok.start[1], tok.end[1], renames[tok.string]))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    for row, start, end, text in sorted(edits, reverse=True):
        lines[row - 1] = lines[row - 1][:start] + text + lines[row - 1][end:]
    kept = [line.rstrip() for line, was in zip(lines, original) if line.strip() or not was.strip()]  # comment-only lines go
    return "\n".join(kept) + "\n"


MLP_HONEST = {
    "softmax": """
        m, _ = torch.max(z, dim=dim, keepdim=True)
        e = torch.exp(z - m)
        total = torch.sum(e, dim=dim, keepdim=True)
        return e / total
    """,
    "log_softmax": """
        m, _ = torch.max(z, dim=dim, keepdim=True)
        lse = m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))
        return z - lse
    """,
    "cross_entropy": """
        logp = log_softmax(logits, dim=1)
        rows = logits.shape[0]
        nll = -logp.gather(1, targets.view(-1, 1)).squeeze(1)
        return nll.sum() / rows
    """,
    "cross_entropy_grad": """
        probs = softmax(logits, dim=1)
        onehot = torch.nn.functional.one_hot(targets, num_classes=logits.shape[1]).to(probs.dtype)
        return (probs - onehot) / logits.shape[0]
    """,
    "softmax_jacobian": """
        p = softmax(z, dim=0)
        C = p.shape[0]
        J = torch.empty(C, C, dtype=z.dtype, device=z.device)
        for i in range(C):
            for j in range(C):
                delta = 1.0 if i == j else 0.0
                J[i, j] = p[i] * (delta - p[j])
        return J
    """,
    "relu": "return torch.where(z > 0, z, torch.zeros_like(z))",
    "relu_grad": "return torch.where(z > 0, torch.ones_like(z), torch.zeros_like(z))",
    "sigmoid": """
        out = torch.empty_like(z)
        pos = z >= 0
        out[pos] = 1 / (1 + torch.exp(-z[pos]))
        ez = torch.exp(z[~pos])
        out[~pos] = ez / (1 + ez)
        return out
    """,
    "sigmoid_grad": """
        sig = sigmoid(z)
        return sig - sig ** 2
    """,
    "tanh": "return 2 * sigmoid(2 * z) - 1",
    "tanh_grad": "return 1 - tanh(z) ** 2",
    "init_mlp": """
        layers = []
        pairs = list(zip(sizes[:-1], sizes[1:]))
        for index, (fan_in, fan_out) in enumerate(pairs):
            last = index == len(pairs) - 1
            std = (1.0 / fan_in) ** 0.5 if last else (2.0 / fan_in) ** 0.5
            weight = std * torch.randn(fan_out, fan_in, generator=generator, dtype=dtype)
            bias = torch.zeros(fan_out, dtype=dtype)
            layers.append((weight.to(device), bias.to(device)))
        return layers
    """,
    "mlp_forward": """
        inputs, pre = [], []
        h = X
        for index, (W, b) in enumerate(params):
            inputs.append(h)
            z = torch.matmul(h, W.t()) + b
            if index == len(params) - 1:
                return z, (inputs, pre)
            pre.append(z)
            h = relu(z)
    """,
    "mlp_backward": """
        L = len(params)
        out = []
        g = dlogits
        for l in reversed(range(L)):
            out.insert(0, (torch.matmul(g.t(), A[l]), g.sum(0)))
            if l == 0:
                break
            g = torch.matmul(g, params[l][0]) * relu_grad(Z[l - 1])
        return out
    """,
    "sgd_step": """
        new_params = []
        for layer in range(len(params)):
            W, b = params[layer]
            dW, db = grads[layer]
            new_params.append((W - lr * dW, b - lr * db))
        return new_params
    """,
    "numerical_gradient": """
        base = x.detach().clone()
        g = torch.empty_like(base)
        for idx in itertools.product(*[range(s) for s in base.shape]):
            bumped = base.clone()
            bumped[idx] += eps
            up = float(f(bumped))
            bumped[idx] -= 2 * eps
            down = float(f(bumped))
            g[idx] = (up - down) / (2 * eps)
        return g
    """,
    "mlp_flops": """
        total = 0
        for i in range(1, len(sizes)):
            total += 2 * sizes[i - 1] * sizes[i]
        return total
    """,
    "mlp_activation_memory": """
        hidden = sizes[1:-1]
        return batch_size * sizes[0] + 2 * batch_size * sum(hidden)
    """,
}

CONV_HONEST = {
    "conv1d_naive": """
        N, C_in, L = x.shape
        C_out, _, K = w.shape
        if padding > 0:
            zeros = x.new_zeros(N, C_in, padding)
            x = torch.cat([zeros, x, zeros], dim=2)
        result = torch.zeros(N, C_out, L_out, dtype=x.dtype, device=x.device)
        for n in range(N):
            for o in range(C_out):
                for t in range(L_out):
                    start = t * stride
                    result[n, o, t] = (x[n, :, start:start + K] * w[o]).sum()
                    if b is not None:
                        result[n, o, t] += b[o]
        return result
    """,
    "conv2d_naive": """
        sH, sW = stride
        pH, pW = padding
        N = x.shape[0]
        C_out, C_in, kH, kW = w.shape
        padded = torch.zeros(N, C_in, x.shape[2] + 2 * pH, x.shape[3] + 2 * pW, dtype=x.dtype, device=x.device)
        padded[:, :, pH:pH + x.shape[2], pW:pW + x.shape[3]] = x
        flat_w = w.reshape(C_out, -1)
        y = torch.empty(N, C_out, H_out, W_out, dtype=x.dtype, device=x.device)
        for row in range(H_out):
            top = row * sH
            for col in range(W_out):
                left = col * sW
                region = padded[:, :, top:top + kH, left:left + kW].reshape(N, -1)
                y[:, :, row, col] = region @ flat_w.T
        if b is not None:
            y += b.view(1, -1, 1, 1)
        return y
    """,
    "max_pool2d": """
        kH, kW = kernel
        sH, sW = stride
        pH, pW = padding
        N, C, H, W = x.shape
        padded = torch.full((N, C, H + 2 * pH, W + 2 * pW), float("-inf"), dtype=x.dtype, device=x.device)
        padded[:, :, pH:pH + H, pW:pW + W] = x
        rows = (H + 2 * pH - kH) // sH + 1
        cols = (W + 2 * pW - kW) // sW + 1
        out = torch.empty(N, C, rows, cols, dtype=x.dtype, device=x.device)
        for i in range(rows):
            for j in range(cols):
                block = padded[:, :, i * sH:i * sH + kH, j * sW:j * sW + kW]
                out[:, :, i, j] = block.flatten(2).max(dim=2).values
        return out
    """,
    "avg_pool2d": """
        kH, kW = kernel
        N, C, H, W = x.shape
        cols = F.unfold(x.reshape(N * C, 1, H, W), (kH, kW), padding=padding, stride=stride)
        rows = (H + 2 * padding[0] - kH) // stride[0] + 1
        return cols.mean(dim=1).reshape(N, C, rows, -1)
    """,
}

MLP_RENAMES = {
    "shifted": "s", "exp": "ex", "N": "n", "log_p": "lp", "picked": "sel", "P": "probs", "Y": "y1",
    "p": "q", "e": "t", "params": "layers", "L": "depth", "n_in": "a", "n_out": "c", "gain": "g2",
    "W": "weights", "b": "bias", "A": "acts", "Z": "pres", "Z_l": "zz", "W_L": "wl", "b_L": "bl",
    "logits": "scores", "grads": "gs", "delta": "d", "dW": "gw", "db": "gb", "point": "pt",
    "flat": "fl", "grad": "gr", "original": "orig", "f_plus": "hi", "f_minus": "lo", "s": "sg", "t": "th",
    "l": "k",
}
CONV_RENAMES = {
    "N": "batch", "C_out": "outc", "K": "ks", "out": "res", "window": "win", "kH": "kh", "kW": "kw",
    "sH": "sh", "sW": "sw", "pH": "ph", "pW": "pw", "patch": "pt", "windows": "wins", "i": "r", "j": "c",
}


@pytest.fixture(scope="module")
def starters() -> dict[str, str]:
    return {module: starter(module) for module in MODULES}


@pytest.fixture(scope="module")
def submissions(starters) -> dict[str, dict[str, str]]:
    mlp_ref, conv_ref = reference_bodies("mlp"), reference_bodies("conv")
    ref = {"mlp": {name: mlp_ref[name] for name in MLP_HONEST}, "conv": {name: conv_ref[name] for name in CONV_HONEST}}
    copy = {"mlp": {n: disguise(b, MLP_RENAMES) for n, b in ref["mlp"].items()},
            "conv": {n: disguise(b, CONV_RENAMES) for n, b in ref["conv"].items()}}
    honest = {"mlp": MLP_HONEST, "conv": CONV_HONEST}
    partial = {"mlp": {**MLP_HONEST, "mlp_backward": copy["mlp"]["mlp_backward"]},
               "conv": {**CONV_HONEST, "conv2d_naive": copy["conv"]["conv2d_naive"]}}
    imports = {"mlp": "import itertools", "conv": ""}

    def student(bodies: dict[str, dict[str, str]], extra_imports: bool = False) -> dict[str, str]:
        return {module: fill(starters[module], bodies[module], imports[module] if extra_imports else "")
                if module in bodies else starters[module] for module in MODULES}

    return {"ref": student(ref), "copy": student(copy), "honest": student(honest, True),
            "partial": student(partial, True), "stub-1": dict(starters), "stub-2": dict(starters)}


@pytest.fixture(scope="module")
def pairs(submissions, starters) -> list[Pair]:
    return find_similar(submissions, starters)


@pytest.fixture(scope="module")
def all_scores(submissions, starters) -> dict[tuple[str, str], Pair]:
    """Every pair that shares anything at all: no threshold, no minimum length."""
    return {(p.a, p.b): p for p in find_similar(submissions, starters, threshold=1e-9, min_match=1)}


def _pair(pairs: list[Pair], a: str, b: str) -> Pair | None:
    return next((p for p in pairs if {p.a, p.b} == {a, b}), None)


# ---------------------------------------------------------------- the fixtures are what they claim


def test_the_honest_solution_works_so_it_is_a_fair_test(submissions):
    """The honest solution is a real one: its functions agree with torch, so its difference from the reference is genuine."""
    mlp, conv = {}, {}
    exec(compile(submissions["honest"]["mlp"], "honest/mlp.py", "exec"), mlp)
    exec(compile(submissions["honest"]["conv"], "honest/conv.py", "exec"), conv)
    torch.manual_seed(0)
    z = torch.randn(5, 7, dtype=torch.float64) * 30
    targets = torch.tensor([0, 6, 3, 3, 1])
    torch.testing.assert_close(mlp["softmax"](z, dim=1), torch.softmax(z, dim=1))
    torch.testing.assert_close(mlp["log_softmax"](z, dim=0), torch.log_softmax(z, dim=0))
    torch.testing.assert_close(mlp["cross_entropy"](z, targets), F.cross_entropy(z, targets))
    logits = z.clone().requires_grad_()
    F.cross_entropy(logits, targets).backward()
    torch.testing.assert_close(mlp["cross_entropy_grad"](z, targets), logits.grad)
    torch.testing.assert_close(mlp["sigmoid"](z), torch.sigmoid(z))
    torch.testing.assert_close(mlp["tanh"](z), torch.tanh(z))
    params = mlp["init_mlp"]([7, 5, 3], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, cache = mlp["mlp_forward"](params, z)
    grads = mlp["mlp_backward"](params, cache, torch.ones_like(out))
    leaves = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in params]
    hidden = torch.relu(z @ leaves[0][0].T + leaves[0][1])
    (hidden @ leaves[1][0].T + leaves[1][1]).sum().backward()
    for (dW, db), (W, b) in zip(grads, leaves):
        torch.testing.assert_close(dW, W.grad)
        torch.testing.assert_close(db, b.grad)
    x, w, bias = torch.randn(2, 3, 9, 8, dtype=torch.float64), torch.randn(4, 3, 3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(conv["conv2d_naive"](x, w, bias, stride=(2, 1), padding=1), F.conv2d(x, w, bias, stride=(2, 1), padding=1))
    torch.testing.assert_close(conv["conv1d_naive"](x[:, :, 0], w[:, :, 0], bias, stride=2, padding=1),
                               F.conv1d(x[:, :, 0], w[:, :, 0], bias, stride=2, padding=1))
    torch.testing.assert_close(conv["max_pool2d"](x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    torch.testing.assert_close(conv["avg_pool2d"](x, 2, 1, 1), F.avg_pool2d(x, 2, 1, 1))


def test_the_copy_renames_names_and_drops_every_comment(submissions):
    copied, reference = submissions["copy"]["mlp"], submissions["ref"]["mlp"]
    assert "shifted" in reference and "shifted" not in copied
    assert "# (N, C)" in reference and "# (N, C)" not in copied  # the reference's shape comments are gone
    assert ".exp()" in copied  # what a rename cannot touch stays


# ---------------------------------------------------------------- what is found and what is not


def test_a_copy_with_renamed_variables_and_no_comments_is_found(pairs):
    pair = _pair(pairs, "copy", "ref")
    assert pair is not None, f"the disguised copy was not found; pairs: {[(p.a, p.b, p.score) for p in pairs]}"
    assert pair.score == pytest.approx(1.0)
    assert pair.modules == ["conv", "mlp"]
    assert pair.module_scores["mlp"] == pytest.approx(1.0) and pair.module_scores["conv"] == pytest.approx(1.0)
    assert pair.exercises == ["1.4", "1.5", "1.6", "1.7", "1.8", "1.9", "1.10", "1.11", "1.12", "1.13", "1.14",
                              "2.1", "2.3", "2.6", "2.7"]


def test_two_independent_honest_solutions_are_not_paired(pairs, all_scores):
    for other in ("ref", "copy"):
        assert _pair(pairs, "honest", other) is None, _pair(pairs, "honest", other)
        shared = all_scores.get(tuple(sorted(("honest", other))))
        # What they share without any threshold: nested loops over output positions in conv, and
        # init_mlp's `torch.zeros(n_out, dtype=dtype)` and `.append((W.to(device), b.to(device)))`.
        assert shared is not None and max(shared.module_scores.values()) < 0.25, shared
        assert max(shared.exercise_scores.values()) < 0.4, shared.exercise_scores


def test_untouched_stubs_are_never_paired_not_even_without_a_threshold(all_scores):
    stubs = [pair for key, pair in all_scores.items() if {"stub-1", "stub-2"} & set(key)]
    assert stubs == [], f"the starter code counted: {stubs}"


def test_an_exercise_copied_into_honest_work_is_named(pairs):
    pair = _pair(pairs, "partial", "ref")
    assert pair is not None
    assert pair.exercises == ["1.11", "2.3"], pair.exercise_scores
    assert pair.exercise_scores["1.11"] == pytest.approx(1.0) and pair.exercise_scores["2.3"] == pytest.approx(1.0)
    assert pair.module_scores["mlp"] < 0.5  # the module alone would not have told
    assert pair.score == pytest.approx(1.0)


def test_pairs_come_most_similar_first_with_sorted_keys(pairs):
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    assert all(p.a < p.b for p in pairs)


def _only(student: dict[str, str], *modules: str) -> dict[str, str]:
    return {module: student[module] for module in modules}


def test_windows_line_ends_do_not_hide_a_copy(submissions, starters):
    crlf = {module: code.replace("\n", "\r\n") for module, code in _only(submissions["copy"], "mlp").items()}
    found = find_similar({"ref": _only(submissions["ref"], "mlp"), "copy": crlf}, starters)
    assert len(found) == 1 and found[0].score == pytest.approx(1.0)


def test_a_module_that_does_not_parse_is_still_compared_as_a_whole(submissions, starters):
    broken = dict(_only(submissions["copy"], "mlp", "conv"), mlp=submissions["copy"]["mlp"] + "\ndef broken(:\n")
    found = find_similar({"ref": _only(submissions["ref"], "mlp", "conv"), "copy": broken}, starters)
    assert found and found[0].module_scores["mlp"] > 0.95
    assert "1.11" not in found[0].exercises and "2.3" in found[0].exercises  # mlp's functions could not be cut out


def test_exercises_are_found_in_the_stubs_by_their_not_implemented_error(starters):
    found = similarity.exercise_functions(starters["conv"])
    assert found["conv1d_naive"] == "2.1"
    assert found["Conv2dFunction.forward"] == "2.8" and found["Conv2dFunction.backward"] == "2.8"
    assert "_check_conv" not in found
    assert similarity.exercise_functions(starters["mlp"])["log_softmax"] == "1.4"


def test_the_fingerprints_do_not_depend_on_pythons_salted_hash():
    """Python's hash() of a string changes with PYTHONHASHSEED: the report must not."""
    assert similarity._kgram_hashes("V=V.V(V,V=V)", 12).tolist() == [4578809324621960214]


def test_bad_thresholds_are_refused(starters):
    with pytest.raises(ValueError, match="threshold in"):
        find_similar({}, starters, threshold=0)
    with pytest.raises(ValueError, match="noise <= guarantee"):
        find_similar({}, starters, noise=40, guarantee=30)


# ---------------------------------------------------------------- the report, and students' strings in it


HOSTILE = {"copy": "<img src=x onerror=alert(1)>", "ref": "Eve | `rm -rf` *bold* [link](http://x)"}


def test_the_report_lists_the_pairs_and_says_similarity_is_not_a_verdict(tmp_path, pairs):
    path = write_similarity_report(tmp_path, pairs, {"ref": "Ada Lovelace", "copy": "Bob"})
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "similarity.md"
    assert "evidence for a conversation, not a verdict" in text
    assert "Ada Lovelace (ref)" in text and "Bob (copy)" in text
    assert "[view](similarity/pair-001.html)" in text
    assert sorted(p.name for p in (tmp_path / "similarity").iterdir()) == [f"pair-{i:03d}.html" for i in range(1, len(pairs) + 1)]


def test_student_strings_are_inert_in_the_markdown(tmp_path, pairs):
    text = write_similarity_report(tmp_path, pairs, HOSTILE).read_text(encoding="utf-8")
    assert "<img" not in text and "onerror=" not in text
    assert "`" not in text and "*bold*" not in text and "](http" not in text
    assert "&#60;img src&#61;x onerror&#61;alert&#40;1&#41;&#62;" in text  # shown as written, as character references
    header = next(line for line in text.splitlines() if line.startswith("| # |"))
    for row in (line for line in text.splitlines() if line.startswith("| 1 |")):
        assert row.count("|") == header.count("|"), f"a name split the table: {row}"


def test_markdown_text_keeps_letters_and_neutralises_the_rest():
    assert markdown_text("Zoë Ødegård 李") == "Zoë Ødegård 李"
    assert markdown_text("a|b") == "a&#124;b"
    assert markdown_text("line\nbreak\u202eevil") == "line break evil"  # no new row, no reversed text
    assert markdown_text("") == "&#8203;"


def test_the_side_by_side_view_escapes_names_and_code(tmp_path, submissions, starters):
    hostile_code = _only(submissions["copy"], "mlp")
    hostile_code["mlp"] = hostile_code["mlp"].replace("import math", "import math  # </pre><script>alert(1)</script>", 1)
    found = find_similar({"ref": _only(submissions["ref"], "mlp"), "copy": hostile_code}, starters)
    write_similarity_report(tmp_path, found, HOSTILE)
    view = (tmp_path / "similarity" / "pair-001.html").read_text(encoding="utf-8")
    assert "<script" not in view and "<img" not in view
    assert "&lt;img src=x onerror=alert(1)&gt;" in view and "&lt;/pre&gt;&lt;script&gt;" in view
    assert "default-src 'none'" in view  # and were anything missed, the page may run no script
    assert "evidence for a conversation, not a verdict" in view


def test_the_view_marks_the_shared_answers_not_the_starter(tmp_path, pairs):
    write_similarity_report(tmp_path, [_pair(pairs, "copy", "ref")], {})
    view = (tmp_path / "similarity" / "pair-001.html").read_text(encoding="utf-8")
    marked = [chunk.split("</mark>")[0] for chunk in view.split("<mark>")[1:]]
    assert any("torch.outer" in chunk for chunk in marked)  # an answer: exercise 1.7
    assert not any("Args:" in chunk or "_check_" in chunk for chunk in marked), "starter code was marked as shared"


def test_a_report_without_pairs_says_so_and_leaves_no_stale_view(tmp_path, pairs):
    write_similarity_report(tmp_path, pairs, {})
    write_similarity_report(tmp_path, [], {})
    assert "No pair of submissions reached the threshold." in (tmp_path / "similarity.md").read_text(encoding="utf-8")
    assert list((tmp_path / "similarity").iterdir()) == []
