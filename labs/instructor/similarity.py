"""Similar submissions: which pairs of students share code that the starter does not explain.

A similarity report is evidence for a conversation with the students, never a verdict: two
students who worked through the lecture's hints together, or who both found the idiomatic line,
can share code honestly, and a copy can be disguised past any detector. Read the side-by-side
views before you speak to anyone.

How it works (Schleimer, Wilkerson & Aiken, "Winnowing: local algorithms for document
fingerprinting", SIGMOD 2003, as implemented by copydetect 0.5):

1. The starter's lines are found in each module by aligning lines in order (difflib) and left
   out: the stubs, their docstrings, the TODO and HINT comments and the provided checks are
   nobody's own work. A line the student changed stays.
2. What is left is tokenized as Python by pygments, exactly as copydetect's `filter_code` does:
   comments and whitespace vanish, every string becomes `S`, every function name `F`, class
   name `O`, and every other name, attribute or parameter `V`. Renaming variables or deleting
   comments therefore changes nothing. (Keeping attribute names, `V.amax` rather than `V.V`,
   was tried: it changed no measured score below, and a copier can rename their own attributes.)
3. Every k-gram (k = NOISE_THRESHOLD characters of filtered text) is hashed; winnowing keeps the
   smallest hash of each window (GUARANTEE_THRESHOLD = NOISE_THRESHOLD: a window of one, every
   k-gram, which a class's size affords). Hashes are BLAKE2b, not Python's `hash`, which changes
   from process to process (PYTHONHASHSEED): the same class gives the same report on every run.
4. copydetect's boilerplate: every k-gram of the starter module and of the code in its comments
   (the hints hold code, `log_p[torch.arange(N), targets]`, that students type in as given).
   A k-gram that overlaps boilerplate, or a place where starter lines were left out, is dropped,
   so that no fingerprint glues the end of one answer to the start of the next, and two
   untouched stubs have nothing left to compare.
5. For each pair of students and each module both handed in, copydetect's `compare_files`
   measures the share of each one's fingerprinted code that the other's covers. A module's
   score is the larger share (a student who copied two exercises from a complete submission is
   covered 100%, the other perhaps 20%). Each exercise's functions (found in the starter by
   their `raise NotImplementedError('Exercise X.Y ...')` and cut out of each submission with
   `ast`) are compared the same way, so that a pair says which exercises look alike.
6. A pair is reported when a module's or an exercise's score reaches `threshold` (DISPLAY_THRESHOLD,
   copydetect's display threshold) on at least MIN_MATCH shared filtered characters, so that a
   one-line exercise written the one natural way cannot make a pair on its own.

Measured on this course's mlp.py (exercises 1.4-1.14) and conv.py (2.1, 2.3, 2.6, 2.7 forward)
in tests/course/instructor/test_similarity.py, k = 25 / 30 / 40: the reference solution against a
copy with renamed variables and no comments scores 1.0 in both modules; against an independent
honest solution 0.05 (mlp) and 0.19 / 0.19 / 0.14 (conv, the nested loops over output positions);
untouched stubs share nothing (no score at all); one exercise copied into otherwise honest work
scores 1.0 on that exercise. k = 30 keeps every copy at 1.0 with a margin of 0.3 above honest work.
"""

from __future__ import annotations

import ast
import bisect
import difflib
import functools
import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pygments import lexers, token

# copydetect is imported where it is used: importing it imports matplotlib.pyplot (its HTML
# report's plots), a second and a half that `python -m labs --help` should not wait for.

NOISE_THRESHOLD = 30  # k: shared runs shorter than this many filtered characters (about two lines) are ignored
GUARANTEE_THRESHOLD = 30  # shared runs this long are always found: window 30 - 30 + 1 = 1, every k-gram kept
DISPLAY_THRESHOLD = 0.5  # the default `threshold`: half of one student's own code covered by the other's
MIN_MATCH = 80  # filtered characters (four or five lines) behind a score that can report a pair
REPORT_NAME = "similarity.md"
VIEWS_DIR = "similarity"

GAP = "\x00"  # stands for the starter's lines in the filtered text
_EXERCISE_RAISE = re.compile(r"^Exercise (\d+(?:\.\d+)*)\b")


@dataclass(frozen=True)
class Match:
    """Where two submissions share code in one module: the code of each and its shared spans."""

    score_a: float  # share of a's own (non-starter) code that b's covers, 0..1
    score_b: float
    matched: int  # filtered characters shared (the smaller of the two sides' counts)
    code_a: str = field(repr=False)
    code_b: str = field(repr=False)
    spans_a: tuple[tuple[int, int], ...] = field(repr=False, default=())  # (start, end) in code_a
    spans_b: tuple[tuple[int, int], ...] = field(repr=False, default=())

    @property
    def score(self) -> float:
        return float(max(self.score_a, self.score_b))


@dataclass(frozen=True)
class Pair:
    """Two students whose code is similar: keys in sorted order, how similar, and where."""

    a: str
    b: str
    score: float  # the highest module or exercise score behind which stand MIN_MATCH shared characters, 0..1
    exercises: list[str]  # exercise ids whose own score reached the threshold, in starter order
    modules: list[str]  # modules whose score reached the threshold, or that hold those exercises
    module_scores: dict[str, float] = field(default_factory=dict)  # every module compared with something shared
    exercise_scores: dict[str, float] = field(default_factory=dict)  # every exercise with something shared
    matches: dict[str, Match] = field(default_factory=dict, repr=False)  # for the side-by-side view, per module in `modules`


@dataclass
class _Fingerprint:
    """What copydetect's `compare_files` reads from a `CodeFingerprint`, built from a string."""

    k: int
    raw_code: str
    filtered_code: str
    offsets: np.ndarray
    hashes: set
    hash_idx: dict
    token_coverage: float


# ---------------------------------------------------------------- tokens and fingerprints


def normalize(code: str) -> str:
    """`code` with Windows and old Mac line ends as `\\n` (pygments would convert them, shifting every position)."""
    return code.replace("\r\n", "\n").replace("\r", "\n")


def starter_lines(starter: str, code: str) -> set[int]:
    """Line numbers (1-based) of `code` that are lines of the starter, aligned in order (difflib).

    Lines are compared stripped; a line the student changed, or one that moved out of the
    starter's order, is the student's.
    """
    given = [line.strip() for line in starter.splitlines()]
    lines = [line.strip() for line in code.splitlines()]
    matcher = difflib.SequenceMatcher(None, given, lines, autojunk=False)
    found: set[int] = set()
    for block in matcher.get_matching_blocks():
        found.update(range(block.b + 1, block.b + block.size + 1))
    return found


@functools.lru_cache(maxsize=1)
def _lexer():
    return lexers.get_lexer_by_name("python", stripnl=False, ensurenl=False)


def python_tokens(code: str) -> list[tuple[int, object, str]]:
    """pygments' Python tokens of `code`: (position, token type, text), positions exact (nothing stripped)."""
    return list(_lexer().get_tokens_unprocessed(code))


@functools.lru_cache(maxsize=4)
def _line_starts(code: str) -> tuple[int, ...]:
    """Where each line of `code` starts (a module's functions are filtered one after another)."""
    return (0, *(match.end() for match in re.finditer("\n", code)))


def filter_python(code: str, masked_lines: set[int] | frozenset[int] = frozenset(),
                  tokens: list[tuple[int, object, str]] | None = None, span: tuple[int, int] | None = None,
                  ) -> tuple[str, np.ndarray]:
    """Python code as copydetect's `filter_code` filters it, the starter's lines left out.

    Args:
        code: the source, with `\\n` line ends (see `normalize`).
        masked_lines: line numbers (1-based) whose tokens are dropped like whitespace: the
            starter's. A token spanning several lines (a docstring) is dropped when all are.
        tokens: `python_tokens(code)`, when already at hand.
        span: (start, end) positions in `code`: filter only the tokens that start there (one
            function), offsets then counted from `start`.

    Returns:
        filtered: names `V`, functions `F`, classes `O`, strings `S`, no comments or whitespace,
            each run of starter lines one GAP.
        offsets: (M, 2) ints, copydetect's map from a filtered index to the characters removed
            before it, with which `compare_files` turns filtered spans back into spans of `code`.
    """
    tokens = python_tokens(code) if tokens is None else tokens
    start, end = span or (0, len(code))
    line_starts = _line_starts(code)
    out: list[str] = []
    length = 0  # len("".join(out))
    offset = 0
    offsets = [[0, 0]]
    variable_tokens = {token.Name, token.Name.Variable, token.Name.Attribute}
    first_token, last_token = bisect.bisect_left(tokens, (start,)), bisect.bisect_left(tokens, (end,))
    for index, kind, text in tokens[first_token:last_token]:
        if masked_lines and kind not in token.Text:
            first = bisect.bisect_right(line_starts, index)
            last = bisect.bisect_right(line_starts, index + max(len(text) - 1, 0))
            if all(line in masked_lines for line in range(first, last + 1)):
                # The starter's: a run of it becomes one GAP, which no fingerprint may contain, so that
                # the end of one function's answer and the start of the next never make a k-gram.
                if out and out[-1] == GAP:
                    offsets.append([length - 1, offset])
                    offset += len(text)
                else:
                    out.append(GAP)
                    length += 1
                    offsets.append([length - 1, offset])
                    offset += len(text) - 1
                continue
        if kind in variable_tokens or kind in token.Name.Function or kind in token.Name.Class:
            out.append("F" if kind in token.Name.Function else "O" if kind in token.Name.Class else "V")
            length += 1
            offsets.append([length - 1, offset])
            offset += len(text) - 1
        elif kind in (token.Comment.Preproc, token.Comment.Hashbang):
            out.append("P")
            length += 1
            offsets.append([length - 1, offset])
            offset += len(text) - 1
        elif kind in token.Text or kind in token.Comment:
            offsets.append([length - 1, offset])
            offset += len(text)
        elif kind in token.Literal.String:
            if text in ("'", '"'):
                out.append('"')
                length += 1
            else:
                out.append("S")
                length += 1
                offsets.append([length - 1, offset])
                offset += len(text) - 1
        else:
            out.append(text)
            length += len(text)
    return "".join(out), np.array(offsets)


def _kgram_hashes(filtered: str, k: int) -> np.ndarray:
    """A stable 64-bit hash of every k-gram (copydetect uses Python's `hash`, salted per process)."""
    return np.array([int.from_bytes(hashlib.blake2b(filtered[i : i + k].encode(), digest_size=8).digest(), "little",
                                    signed=True) for i in range(len(filtered) - k + 1)], dtype=np.int64)


def boilerplate_hashes(code: str, k: int = NOISE_THRESHOLD) -> np.ndarray:
    """Every k-gram hash of the starter's code and of the code in its comments (copydetect's boilerplate).

    The comments count because the stubs' hints hold code (`# HINT: ... log_p[torch.arange(N), targets]`)
    that every student was given and many type in as written.
    """
    hashes = [_kgram_hashes(filter_python(normalize(code))[0], k)]
    for block in _comment_blocks(normalize(code)):
        hashes.append(_kgram_hashes(filter_python(block)[0], k))
    return np.unique(np.concatenate(hashes))


def _comment_blocks(code: str) -> list[str]:
    """The text of each run of consecutive comment lines, `#` and a leading `HINT:` or `TODO` removed."""
    blocks, current = [], []
    for line in code.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("#"):
            current.append(re.sub(r"^#+\s*(HINT:|TODO)?\s*", "", stripped))
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


def fingerprint(code: str, boilerplate: np.ndarray, k: int = NOISE_THRESHOLD, guarantee: int = GUARANTEE_THRESHOLD,
                masked_lines: set[int] | frozenset[int] = frozenset()) -> _Fingerprint:
    """Winnowed fingerprints of `code`, without its starter lines and the boilerplate's k-grams.

    copydetect's get_document_fingerprints, with two changes: the hashes are stable, and a
    k-gram that overlaps a boilerplate k-gram anywhere is dropped, not only one equal to it
    (otherwise a k-gram made of a hint's code and the first characters of a student's own line
    is shared by everyone who starts alike).
    """
    filtered, offsets = filter_python(code, masked_lines)
    return _fingerprint(code, filtered, offsets, boilerplate, k, guarantee)


def _fingerprint(code: str, filtered: str, offsets: np.ndarray, boilerplate: np.ndarray, k: int,
                 guarantee: int) -> _Fingerprint:
    from copydetect.utils import get_token_coverage, winnow

    all_hashes = _kgram_hashes(filtered, k)  # (len(filtered) - k + 1,)
    if len(all_hashes):
        hashes, idx = winnow(all_hashes, window_size=guarantee - k + 1, remove_duplicates=False)
    else:
        hashes, idx = all_hashes, np.array([], dtype=np.int64)
    starter_at = np.zeros(len(filtered) + 1, dtype=np.int64)
    for j in np.flatnonzero(np.isin(all_hashes, boilerplate)):
        starter_at[j] += 1  # positions j .. j+k-1 are given code
        starter_at[j + k] -= 1
    for j in (i for i, ch in enumerate(filtered) if ch == GAP):
        starter_at[j] += 1  # where the starter's lines were left out
        starter_at[j + 1] -= 1
    given = np.cumsum(starter_at)[: len(filtered)] > 0  # (len(filtered),)
    before = np.concatenate([[0], np.cumsum(given)])  # before[i]: given positions among the first i
    keep = before[idx + k] - before[idx] == 0
    hashes, idx = hashes[keep], idx[keep]
    hash_idx: dict[int, list[int]] = {}
    for value, index in zip(hashes.tolist(), idx.tolist()):
        hash_idx.setdefault(value, []).append(index)
    coverage = get_token_coverage(hash_idx, k, len(filtered))
    return _Fingerprint(k, code, filtered, offsets, set(hash_idx), hash_idx, coverage)


def exercise_functions(starter: str) -> dict[str, str]:
    """{function's qualified name: exercise id} for the starter's stubs, found by their NotImplementedError.

    A stub reads `raise NotImplementedError('Exercise 1.4 (Softmax ...): ...')`; methods are
    named `Class.method`, as `Conv2dFunction.forward` for exercise 2.8.
    """
    found: dict[str, str] = {}
    try:
        tree = ast.parse(starter)
    except SyntaxError:
        return found
    for qualname, node in _functions(tree):
        for inner in ast.walk(node):
            if isinstance(inner, ast.Raise) and isinstance(inner.exc, ast.Call) and inner.exc.args \
                    and isinstance(inner.exc.func, ast.Name) and inner.exc.func.id == "NotImplementedError" \
                    and isinstance(inner.exc.args[0], ast.Constant) and isinstance(inner.exc.args[0].value, str):
                exercise = _EXERCISE_RAISE.match(inner.exc.args[0].value)
                if exercise:
                    found[qualname] = exercise[1]
                    break
    return found


def _functions(tree: ast.Module):
    """(qualified name, node) of the module's functions and of its classes' methods."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{node.name}.{inner.name}", inner


def function_spans(code: str, names: set[str]) -> dict[str, tuple[int, int]]:
    """{qualified name: (start, end) positions in `code`} of its functions named in `names`; {} if it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    line_starts = [*_line_starts(code), len(code)]
    found = {}
    for qualname, node in _functions(tree):
        if qualname in names:
            first = min([node.lineno, *[d.lineno for d in node.decorator_list]])
            found[qualname] = (line_starts[first - 1], line_starts[min(node.end_lineno, len(line_starts) - 1)])
    return found


# ---------------------------------------------------------------- comparing


def _compare(one: _Fingerprint, other: _Fingerprint) -> Match | None:
    """copydetect's comparison of two fingerprints; None when they share no fingerprint."""
    if not one.hashes & other.hashes:
        return None
    from copydetect.detector import compare_files

    overlap_a, (score_a, score_b), (slices_a, slices_b) = compare_files(one, other)
    if not overlap_a:
        return None
    overlap_b = round(score_b * other.token_coverage)  # compare_files returns only the first side's count
    return Match(float(score_a), float(score_b), int(min(overlap_a, overlap_b)), one.raw_code, other.raw_code,
                 _spans(slices_a, len(one.raw_code)), _spans(slices_b, len(other.raw_code)))


def _spans(slices: np.ndarray, length: int) -> tuple[tuple[int, int], ...]:
    if len(slices) == 0 or np.size(slices) == 0:
        return ()
    return tuple((max(0, int(s)), min(length, int(e))) for s, e in zip(slices[0], slices[1]) if e > s)


@dataclass
class _Student:
    modules: dict[str, _Fingerprint]
    functions: dict[str, dict[str, _Fingerprint]]  # module -> qualified name -> fingerprint


def find_similar(submissions: dict[str, dict[str, str]], starter: dict[str, str], threshold: float = DISPLAY_THRESHOLD,
                 noise: int = NOISE_THRESHOLD, guarantee: int = GUARANTEE_THRESHOLD, min_match: int = MIN_MATCH) -> list[Pair]:
    """The pairs of students whose code is similar beyond the starter, most similar first.

    Args:
        submissions: {student key: {module name ("basics", "mlp", ...): its source}}; a module a
            student did not hand in is left out (or empty).
        starter: {module name: the stub module as handed out, provided code included}: its code
            never counts. A module without a starter is compared whole.
        threshold: the module or exercise score (0..1) from which a pair is reported.
        noise, guarantee: copydetect's noise and guarantee thresholds, in filtered characters.
        min_match: filtered characters two students must share in a module or exercise for its score to count.

    Returns:
        Pairs (a < b), by score, then keys.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"find_similar expected a threshold in (0, 1], got {threshold}")
    if not 0 < noise <= guarantee:
        raise ValueError(f"find_similar expected 0 < noise <= guarantee, got noise {noise} and guarantee {guarantee}")
    boilerplate = {module: boilerplate_hashes(code, noise) for module, code in starter.items()}
    exercises = {module: exercise_functions(code) for module, code in starter.items()}
    order = {ex: i for i, ex in enumerate(dict.fromkeys(ex for per in exercises.values() for ex in per.values()))}
    seen: dict[tuple[str, str], tuple] = {}
    students = {key: _student(submissions[key], starter, boilerplate, exercises, noise, guarantee, seen)
                for key in sorted(submissions)}
    pairs = []
    keys = sorted(students)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            pair = _pair(a, b, students[a], students[b], exercises, order, threshold, min_match)
            if pair is not None:
                pairs.append(pair)
    return sorted(pairs, key=lambda p: (-p.score, p.a, p.b))


def _student(modules: dict[str, str], starter: dict[str, str], boilerplate: dict[str, np.ndarray],
             exercises: dict[str, dict[str, str]], noise: int, guarantee: int,
             seen: dict[tuple[str, str], tuple] | None = None) -> _Student:
    """One student's fingerprints: per module, and per exercise function (its text cut out with ast).

    `seen` holds the fingerprints of module texts met before in this run: identical files
    (untouched stubs, a file handed in twice) are tokenized once.
    """
    student = _Student({}, {})
    seen = {} if seen is None else seen
    for module, code in sorted(modules.items()):
        if not code or not code.strip():
            continue
        code = normalize(code)
        if (module, code) not in seen:
            plate = boilerplate.get(module, np.array([], dtype=np.int64))
            given = starter_lines(normalize(starter[module]), code) if module in starter else set()
            tokens = python_tokens(code)  # lexed once, for the module and for each of its functions
            whole = _fingerprint(code, *filter_python(code, given, tokens), plate, noise, guarantee)
            functions = {
                name: _fingerprint(code[start:end], *filter_python(code, given, tokens, (start, end)), plate, noise, guarantee)
                for name, (start, end) in function_spans(code, set(exercises.get(module, {}))).items()}
            seen[(module, code)] = (whole, functions)
        student.modules[module], student.functions[module] = seen[(module, code)]
    return student


def _pair(a: str, b: str, one: _Student, other: _Student, exercises: dict[str, dict[str, str]], order: dict[str, int],
          threshold: float, min_match: int) -> Pair | None:
    """The pair (a, b) when one of its modules or exercises reaches `threshold` on `min_match` characters or more."""
    module_scores: dict[str, float] = {}
    exercise_scores: dict[str, float] = {}
    matches: dict[str, Match] = {}
    module_of: dict[str, str] = {}
    counted: list[float] = []  # the scores shared code of min_match characters or more stands behind
    flagged_modules: set[str] = set()
    for module in sorted(set(one.modules) & set(other.modules)):
        match = _compare(one.modules[module], other.modules[module])
        if match is None:
            continue
        module_scores[module] = round(match.score, 3)
        matches[module] = match
        if match.matched >= min_match:
            counted.append(match.score)
            if match.score >= threshold:
                flagged_modules.add(module)
        for exercise, (score, matched) in _exercise_scores(one, other, module, exercises.get(module, {})).items():
            exercise_scores[exercise] = round(score, 3)
            module_of[exercise] = module
            if matched >= min_match:
                counted.append(score)
    score = max(counted, default=0.0)
    if score < threshold:
        return None
    listed = sorted((e for e, s in exercise_scores.items() if s >= threshold), key=lambda e: order.get(e, len(order)))
    modules = sorted(flagged_modules | {module_of[e] for e in listed})
    return Pair(a, b, round(score, 3), listed, modules, module_scores,
                dict(sorted(exercise_scores.items(), key=lambda item: order.get(item[0], len(order)))),
                {module: matches[module] for module in modules})


def _exercise_scores(one: _Student, other: _Student, module: str, exercises: dict[str, str]) -> dict[str, tuple[float, int]]:
    """{exercise id: (score, characters shared)} over the exercise's functions that both students have."""
    parts: dict[str, list[tuple[float, float, float, float, int]]] = {}
    for name, exercise in exercises.items():
        left, right = one.functions[module].get(name), other.functions[module].get(name)
        if left is None or right is None:
            continue
        match = _compare(left, right)
        if match is None:
            continue
        parts.setdefault(exercise, []).append((match.score_a * left.token_coverage, left.token_coverage,
                                               match.score_b * right.token_coverage, right.token_coverage, match.matched))
    found = {}
    for exercise, rows in parts.items():
        covered_a, own_a, covered_b, own_b = (sum(row[i] for row in rows) for i in range(4))
        score = max(covered_a / own_a if own_a else 0.0, covered_b / own_b if own_b else 0.0)
        found[exercise] = (float(score), sum(row[4] for row in rows))
    return found


# ---------------------------------------------------------------- the report


def markdown_text(text: str) -> str:
    """A student-provided string as inert Markdown and HTML text: it shows as written and does nothing.

    Every ASCII character that is not a letter, a digit or a space becomes a numeric character
    reference (`<` is `&#60;`, `|` is `&#124;`, a backtick `&#96;`): no tag, link, emphasis,
    code span or table cell can start, and the reader still sees the character. Control and
    format characters (new lines, bidirectional overrides) become a space.
    """
    out = []
    for ch in str(text):
        if unicodedata.category(ch)[0] in ("C", "Z") and ch != " ":
            out.append(" ")
        elif ch.isascii() and not ch.isalnum() and ch != " ":
            out.append(f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out).strip() or "&#8203;"


def _percent(score: float) -> str:
    return f"{100 * score:.0f}%"


def write_similarity_report(out_dir: Path, pairs: list[Pair], labels: dict[str, str], threshold: float = DISPLAY_THRESHOLD,
                            noise: int = NOISE_THRESHOLD, guarantee: int = GUARANTEE_THRESHOLD,
                            min_match: int = MIN_MATCH) -> Path:
    """similarity.md in `out_dir`, and a side-by-side view per pair in similarity/pair-NNN.html; returns the report's path.

    Args:
        out_dir: the folder to write into (created when missing).
        pairs: as from `find_similar`.
        labels: {student key: how the report names them (a name)}; the key alone where missing.
        threshold, noise, guarantee, min_match: what `find_similar` was called with, for the report to say.
    """
    out_dir = Path(out_dir)
    views = out_dir / VIEWS_DIR
    views.mkdir(parents=True, exist_ok=True)
    for old in views.glob("pair-*.html"):  # a rerun with fewer pairs leaves no stale view behind
        old.unlink()
    lines = [
        "# Similar submissions",
        "",
        "Similarity is evidence for a conversation, not a verdict. Students who worked through the "
        "lecture's hints together, or who found the same idiomatic line, share code honestly; a copy "
        "can also be disguised beyond what any detector finds. Read both submissions side by side, "
        "then talk with the students before concluding anything.",
        "",
        "Method: winnowed fingerprints of the Python tokens (copydetect; names and comments ignored, "
        f"the starter's code and hints removed), noise threshold {noise}, guarantee threshold {guarantee}. "
        "A score is the share of one student's own code that the other's covers. A pair is listed when a "
        f"module or a single exercise scores {_percent(threshold)} or more on at least {min_match} shared "
        "characters of tokens (about five lines).",
        "",
    ]
    if not pairs:
        lines += ["No pair of submissions reached the threshold.", ""]
    else:
        lines += [f"{len(pairs)} pair(s), most similar first.", "",
                  "| # | student | student | score | modules | exercises | side by side |",
                  "|---:|---|---|---:|---|---|---|"]
    for number, pair in enumerate(pairs, start=1):
        view = f"pair-{number:03d}.html"
        modules = ", ".join(f"{markdown_text(m)} {_percent(pair.module_scores.get(m, 0.0))}" for m in pair.modules)
        exercises = ", ".join(f"{markdown_text(e)} ({_percent(pair.exercise_scores.get(e, 0.0))})" for e in pair.exercises)
        lines.append(f"| {number} | {_who(pair.a, labels)} | {_who(pair.b, labels)} | {_percent(pair.score)} | "
                     f"{modules} | {exercises or 'spread over the module'} | [view]({VIEWS_DIR}/{view}) |")
        (views / view).write_text(_side_by_side(pair, labels), encoding="utf-8")
    path = out_dir / REPORT_NAME
    temporary = out_dir / f".{REPORT_NAME}.tmp"
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def _who(key: str, labels: dict[str, str]) -> str:
    label = labels.get(key, key)
    return markdown_text(label) if label == key else f"{markdown_text(label)} ({markdown_text(key)})"


def _highlight(code: str, spans: tuple[tuple[int, int], ...]) -> str:
    """`code` escaped for HTML, its shared spans in <mark>."""
    out, position = [], 0
    for start, end in sorted(spans):
        start = max(start, position)
        if end <= start:
            continue
        out.append(html.escape(code[position:start]))
        out.append(f"<mark>{html.escape(code[start:end])}</mark>")
        position = end
    out.append(html.escape(code[position:]))
    return "".join(out)


_STYLE = """body { font-family: sans-serif; margin: 1em; }
.note { background: #fff4d6; padding: 0.6em; border-left: 4px solid #e0a800; }
.side { display: flex; gap: 1em; } .side > div { flex: 1; min-width: 0; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 12px; white-space: pre; }
mark { background: #ffd3d3; }"""


def _side_by_side(pair: Pair, labels: dict[str, str]) -> str:
    """One pair's modules side by side, the shared code marked; everything from the students escaped."""
    name_a, name_b = (html.escape(labels.get(k, k)) for k in (pair.a, pair.b))
    key_a, key_b = html.escape(pair.a), html.escape(pair.b)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script runs in this page, whatever a submission holds: the policy forbids them.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Similarity: {name_a} and {name_b}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{name_a} ({key_a}) and {name_b} ({key_b}): {_percent(pair.score)}</h1>",
        '<p class="note">Similarity is evidence for a conversation, not a verdict. Marked: code the two '
        "share beyond the starter (names and comments ignored).</p>",
    ]
    if pair.exercises:
        listed = ", ".join(f"{html.escape(e)} ({_percent(pair.exercise_scores.get(e, 0.0))})" for e in pair.exercises)
        parts.append(f"<p>Exercises: {listed}.</p>")
    for module, match in pair.matches.items():
        parts += [
            f"<h2>{html.escape(module)}: {_percent(match.score_a)} of {name_a}'s own code, "
            f"{_percent(match.score_b)} of {name_b}'s</h2>",
            '<div class="side">',
            f"<div><h3>{name_a}</h3><pre>{_highlight(match.code_a, match.spans_a)}</pre></div>",
            f"<div><h3>{name_b}</h3><pre>{_highlight(match.code_b, match.spans_b)}</pre></div>",
            "</div>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
