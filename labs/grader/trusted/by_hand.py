"""Exercises written by hand: a static reading of a submission's source, on the trusted side.

Some exercises exist to be written by hand: softmax from exp and sum, a convolution from
unfold and one matrix product, a backward pass from the chain rule. A submission that calls
the library operation instead passes every numerical test, so the grader also reads the
source and withholds the points of a by-hand exercise whose code uses what it implements.

Contract
--------
What it reads: the text of the exercise modules of a submission (basics, mlp, conv, models),
and, for names a submission takes from the student's helpers in labs/provided, the text of the
grader's own copy of those helpers. It parses text with `ast`; it never imports, compiles or
runs any of it, so nothing a submission writes executes here, and a submission cannot patch it.

What it answers: for every by-hand exercise (RULES), the places where the exercise's code uses

1. the library operation the exercise implements, under any of its spellings (Rule.forbidden):
   `F.conv2d`, `from torch.nn.functional import conv2d as c`, `nn.functional.conv2d`, a module
   alias, a lambda, `functools.partial`, a default argument, a decorator, `getattr(F, "conv2d")`,
   a tensor method such as `z.softmax(1)`;
2. something a reading cannot see through: getattr/setattr/hasattr with a computed name,
   `__dict__`, `__class__`, frames, `vars()`, `globals()`, `exec`, `eval`, `compile`,
   `__import__`, a module-level `__getattr__`, `torch.ops`, `torch.library`, private names of a
   library (`torch._C`), `typing.get_type_hints`, `string.Formatter`, a module passed around as
   a value, `operator.attrgetter`/`methodcaller` with a computed name;
3. an import outside the allow-list (ALLOWED_IMPORTS, torch, STUDENT_HELPERS, the exercise
   modules), including a module reached through a helper's own imports, or any reach into the
   grader, the tests or the reference solutions (`labs.use_implementation` included);
4. something that tampers with the grader's run-time checks: the worker's probes, torch's
   overrides and function modes, `__torch_function__`, `sys.setprofile`/`settrace`, or an
   assignment to anything of torch's (`F.pad = ...`; `torch.backends.*` settings excepted).

"The exercise's code" is its functions (methods, for `Class.method`, with the class's own body)
and everything they reach by name: helper functions and classes (a class reached is read whole),
module-level aliases, lambdas and containers (and whatever fills them), decorators and default
arguments, other exercises' functions, the student helpers they name and, when
`check_submission` is given every module, the other exercise modules. Module-level code that
does 2 to 4 counts against every by-hand exercise of its module; module-level code that does 1
counts against every exercise that reaches a name it binds, or against all when it binds none.

Where a reading must guess it guesses against the submission, by name: an attribute of an
object it cannot name (`z.softmax`, `layer.backward`) is taken for the tensor method of that
name, so a by-hand backward pass should call its helpers as functions, not as `.backward`
methods of objects. It does not flag exercises that are not by hand (1.3, 1.9, 2.8, 3.1, ...),
or code no by-hand exercise reaches (the provided layers may use nn.Conv2d freely). A source
that does not parse gets no flags: its tests fail anyway. A module takes a few milliseconds.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from fnmatch import translate
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

# ---------------------------------------------------------------- what a submission may import

EXERCISE_MODULES = ("basics", "mlp", "conv", "models")
STUDENT_HELPERS = frozenset(  # labs.provided.<name>: what a student imports; read from the grader's copy
    {"settings", "device", "seeding", "data", "training", "plots", "distributed", "fast_lrn", "atomic", "exercise_cells"}
)
ALLOWED_IMPORTS = frozenset(  # top-level modules besides torch and labs
    {
        "__future__", "abc", "bisect", "cmath", "collections", "contextlib", "copy", "dataclasses", "enum",
        "fractions", "functools", "heapq", "itertools", "math", "numbers", "operator", "random", "re",
        "statistics", "string", "time", "typing", "typing_extensions", "warnings",
    }
)
GRADER_ROOTS = frozenset({"solutions", "tests", "pytest", "_pytest", "conftest", "hypothesis"})
REFLECTIVE_MODULES = frozenset(  # look code up by string, or run it: a reading cannot follow them
    {
        "builtins", "code", "codeop", "ctypes", "dis", "gc", "imp", "importlib", "inspect", "marshal", "multiprocessing",
        "os", "pickle", "pkgutil", "runpy", "signal", "subprocess", "sys", "threading", "types", "zipimport",
    }
)

# ---------------------------------------------------------------- what no by-hand exercise may use

OPAQUE_TORCH = (  # besides any private name (a segment starting with "_"): ways around a reading of torch calls
    "torch.ops", "torch.ops.*", "torch.library", "torch.library.*", "torch.classes", "torch.classes.*",
    "torch.utils.cpp_extension", "torch.utils.cpp_extension.*", "torch.hub", "torch.hub.*", "torch.load",
    "torch.jit.load", "torch.package", "torch.package.*", "torch.serialization", "torch.serialization.*",
    # compiled code: its Python loops are hidden from the run-time count of torch calls
    "torch.jit", "torch.jit.*", "torch.compile", "torch._dynamo*", "torch.fx", "torch.fx.*",
)
OPAQUE_STANDARD = (  # string-to-object lookups in modules a submission may import
    "typing.get_type_hints", "typing.ForwardRef", "typing_extensions.get_type_hints", "string.Formatter",
)
PROBE_NAMES = (  # what the run-time checks rest on
    "torch.overrides", "torch.overrides.*", "*TorchFunctionMode*", "*TorchDispatchMode*",
    "labs.grader.worker.probes*", "labs.provided.probes*",
)
OPAQUE_BUILTINS = frozenset({"eval", "exec", "compile", "globals", "locals", "vars", "__import__", "__builtins__", "breakpoint"})
NAME_BUILTINS = frozenset({"getattr", "setattr", "delattr", "hasattr"})  # fine with a literal name, opaque without
OPAQUE_ATTRIBUTES = frozenset(
    {
        "__dict__", "__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__class__", "__subclasses__",
        "__mro__", "__bases__", "__base__", "__globals__", "__code__", "__closure__", "__defaults__", "__kwdefaults__",
        "__builtins__", "__import__", "__loader__", "__spec__", "__self__", "__func__", "__wrapped__", "__reduce__",
        "__reduce_ex__", "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame",
        "cr_frame", "ag_frame", "__traceback__", "_getframe",
    }
)
PROBE_ATTRIBUTES = frozenset(
    {"__torch_function__", "__torch_dispatch__", "setprofile", "settrace", "setprofile_all_threads", "settrace_all_threads"}
)
HARMLESS_AFTER_CLASS = frozenset({"__name__", "__qualname__", "__module__"})  # x.__class__.__name__ in a message
MODULES = frozenset(  # dotted names that are modules: passing one around as a value hides what is called on it
    {
        "torch", "torch.nn", "torch.nn.functional", "torch.nn.modules", "torch.nn.grad", "torch.nn.init", "torch.special",
        "torch.linalg", "torch.fft", "torch.sparse", "torch.autograd", "torch.autograd.functional", "torch.func",
        "torch.distributions", "torch.overrides", "torch.utils", "torch.jit", "numpy", "scipy", "scipy.signal",
        "scipy.ndimage", "math", "cmath", "operator", "functools", "builtins", "labs", "labs.provided",
        *(f"labs.{m}" for m in EXERCISE_MODULES),
        *(f"labs.provided.{h}" for h in STUDENT_HELPERS),
    }
)
TENSOR_CLASSES = frozenset({"torch.Tensor", "torch.nn.Parameter", "torch.nn.parameter.Parameter"})

# ---------------------------------------------------------------- the library operations, family by family
# Dotted entries are glob patterns on the full dotted name, so that re-exports are caught too
# (torch.nn.modules.conv.F.conv2d); entries starting with "." are attribute names (globs) used on an
# object the reading cannot name, which is how tensor methods are seen (z.softmax(dim=1)).

DISTANCES = (
    "torch.*cdist*", "torch.*pdist*", "torch.*pairwise_distance*", "torch.*PairwiseDistance*",
    "torch.*euclidean_dist*", "scipy.spatial*", "sklearn*", ".cdist", ".pdist",
)
ONE_HOT = ("torch.*one_hot*", ".one_hot")
SOFTMAX = (  # logsumexp too: it is the stable shift that 1.4 teaches, and z - z.logsumexp(...) *is* log_softmax
    "torch.*softmax*", "torch.*Softmax*", "torch.*softmin*", "torch.*Softmin*", "torch.*logsumexp*",
    "torch.*logcumsumexp*", "torch.distributions*", ".softmax", ".log_softmax", ".logsumexp", ".logcumsumexp",
    # attention is a softmax over its scores: with identity keys and values it is softmax itself
    "torch.*scaled_dot_product_attention*", "torch.*multi_head_attention*", "torch.*MultiheadAttention*",
    "torch.nn.attention*", "torch.*flex_attention*",
)
CROSS_ENTROPY = (  # kl_div against a one-hot target is the cross-entropy too
    "torch.*cross_entropy*", "torch.*CrossEntropy*", "torch.*nll_loss*", "torch.*NLLLoss*", "torch.*kl_div*",
    "torch.*KLDiv*", "torch.nn.functional.*loss*", "torch.nn.*Loss*", "torch.nn.modules.loss*", "torch.distributions*",
)
ACTIVATIONS = (  # relu, sigmoid and tanh, and the activations that give one of them by a choice of parameter
    "torch.*relu*", "torch.*ReLU*", "torch.*sigmoid*", "torch.*Sigmoid*", "torch.*tanh*", "torch.*Tanh*",
    "torch.*threshold*", "torch.*Threshold*", "torch.nn.functional.*elu*", "torch.nn.*ELU*", "torch.*expit*",
    "torch.*softplus*", "torch.*Softplus*", "torch.*silu*", "torch.*SiLU*", "torch.nn.modules.activation*",
    "math.tanh", "cmath.tanh", "numpy.*", "torch.*glu*", "torch.*GLU*",  # glu(stack([1, z])) is sigmoid(z)
    ".relu", ".relu_", ".*sigmoid*", ".*tanh*", ".threshold*", ".*elu", ".*elu_", ".softplus", ".expit", ".silu",
)
AUTOGRAD = (  # gradients computed by autograd rather than by the chain rule; autograd.Function itself is allowed
    "torch.autograd", "torch.autograd.*", "torch.func", "torch.func.*", "functorch*", "torch.enable_grad",
    "torch.set_grad_enabled", "torch.Tensor.backward", "torch.Tensor.requires_grad_", "torch.Tensor.grad_fn",
    "torch.nn.Parameter", "torch.nn.parameter*",  # a parameter requires grad: autograd's way in
    ".backward", ".requires_grad_", ".grad_fn", ".requires_grad=True",
)
AUTOGRAD_EXEMPT = (
    "torch.autograd.Function", "torch.autograd.function", "torch.autograd.function.*", "torch.autograd.no_grad",
    "torch.autograd.grad_mode.no_grad", "torch.autograd.inference_mode", "torch.autograd.grad_mode.inference_mode",
)
CONVOLUTION = (  # the library's convolutions, their gradients (torch.nn.grad) and the other libraries' filters
    "torch.conv*", "torch.*conv[123]d*", "torch.*conv_t*", "torch.*convolution*", "torch.nn.Conv*", "torch.nn.LazyConv*",
    "torch.*.Conv[123]d*", "torch.*.ConvTranspose*", "torch.nn.modules.conv*", "torch.nn.grad", "torch.nn.grad.*",
    "torch.ao.*", "torch.nn.quantized*", "torch.nn.intrinsic*", "torch.nn.qat*", "numpy.*convolve*", "numpy.*correlate*",
    "scipy.signal*", "scipy.ndimage*",
)
POOLING = ("torch.*pool*", "torch.*Pool*", "scipy.ndimage*",
           "torch.*interpolate*", "torch.*Upsample*", ".interpolate")  # interpolate(mode="area") is an average pool
LOCAL_RESPONSE_NORM = (
    "torch.*local_response_norm*", "torch.*LocalResponseNorm*", "torch.*CrossMapLRN*", "labs.provided.fast_lrn*",
)


@dataclass(frozen=True)
class Rule:
    """One by-hand exercise: what its code may not use, and (for the docstrings) what it may."""

    exercise: str  # "2.4"
    module: str  # "conv"
    functions: tuple[str, ...]  # its functions, "Class.method" for methods, as in the catalog
    forbidden: tuple[str, ...]  # dotted globs ("torch.nn.functional.conv*") and attribute globs (".softmax")
    allowed_note: str  # one sentence: what it may use, and the judgement calls
    exempt: tuple[str, ...] = ()  # dotted globs that stay allowed although a forbidden glob covers them


def _rule(exercise, module, functions, families, note, exempt=()) -> Rule:
    forbidden = tuple(dict.fromkeys(entry for family in families for entry in family))
    return Rule(exercise, module, tuple(functions), forbidden, note, tuple(exempt))


_CONV_NOTE = (
    "F.pad, Tensor.unfold, Tensor.as_strided, F.unfold and F.fold (im2col and col2im are building blocks), "
    "einsum, tensordot, matmul, torch.fft and Python loops are allowed; any library convolution is not "
    "(torch.conv*, F.conv*, nn.Conv*, torch.nn.grad.*, numpy/scipy filters)"
)
RULES: dict[str, Rule] = {
    rule.exercise: rule
    for rule in (
        _rule("1.1", "basics", ["pairwise_squared_distances"], [DISTANCES],
              "Broadcasting, indexing, elementwise operations and reductions are allowed (torch.linalg.vector_norm "
              "included); torch.cdist, torch.pdist, F.pairwise_distance and nn.PairwiseDistance are not."),
        _rule("1.2", "basics", ["one_hot"], [ONE_HOT],
              "torch.zeros with advanced indexing, scatter_, comparisons with torch.arange and torch.eye(C)[y] are "
              "allowed; F.one_hot is not."),
        _rule("1.4", "mlp", ["softmax", "log_softmax"], [SOFTMAX, AUTOGRAD],
              "exp, log, amax/max, sum and subtraction are allowed; torch.softmax, F.softmax, log_softmax in any "
              "spelling (tensor methods, torch.special, nn.Softmax), attention (a softmax of scores), "
              "torch.distributions, logsumexp, logcumsumexp and autograd (softmax is the gradient of logsumexp) "
              "are not: logsumexp is the stable shift this exercise teaches.", AUTOGRAD_EXEMPT),
        _rule("1.5", "mlp", ["cross_entropy"], [SOFTMAX, CROSS_ENTROPY, AUTOGRAD],
              "Your own log_softmax, advanced indexing, gather, F.one_hot and mean are allowed; the softmax family, "
              "logsumexp, autograd, F.cross_entropy, F.nll_loss, F.kl_div and the nn loss modules are not.",
              AUTOGRAD_EXEMPT),
        _rule("1.6", "mlp", ["cross_entropy_grad"], [SOFTMAX, CROSS_ENTROPY, AUTOGRAD],
              "Your own softmax, zeros_like with indexing, scatter_ and F.one_hot are allowed; the softmax and "
              "cross-entropy families and autograd (.backward, torch.autograd.*, torch.func, requires_grad) are not.",
              AUTOGRAD_EXEMPT),
        _rule("1.7", "mlp", ["softmax_jacobian"], [SOFTMAX, AUTOGRAD],
              "Your own softmax, torch.diag, torch.diag_embed, torch.outer and torch.eye are allowed; the softmax "
              "family and autograd (torch.autograd.functional.jacobian, torch.func.jacrev/jacfwd) are not.",
              AUTOGRAD_EXEMPT),
        _rule("1.8", "mlp", ["relu", "relu_grad", "sigmoid", "sigmoid_grad", "tanh", "tanh_grad"], [ACTIVATIONS, SOFTMAX, AUTOGRAD],
              "clamp, clamp_min, maximum, where, comparisons, exp, expm1, log1p, logaddexp, abs and sign are allowed; "
              "the library's relu, sigmoid and tanh in any spelling (torch.*, F.*, nn.*, tensor methods, "
              "torch.special.expit, math.tanh), the activations that reduce to them (threshold, hardtanh, elu, "
              "softplus, silu, logsigmoid, glu), softmax (a two-class softmax is a sigmoid) and autograd are not.",
              AUTOGRAD_EXEMPT),
        _rule("1.11", "mlp", ["mlp_backward"], [AUTOGRAD],
              "Matrix products, transposes, sums and your relu_grad are allowed; autograd (.backward, "
              "torch.autograd.*, torch.func, requires_grad=True, .grad_fn) is not.", AUTOGRAD_EXEMPT),
        _rule("2.1", "conv", ["conv1d_naive"], [CONVOLUTION], _CONV_NOTE + "."),
        _rule("2.2", "conv", ["conv1d"], [CONVOLUTION], _CONV_NOTE + "."),
        _rule("2.3", "conv", ["conv2d_naive"], [CONVOLUTION], _CONV_NOTE + "."),
        _rule("2.4", "conv", ["conv2d"], [CONVOLUTION], _CONV_NOTE + "."),
        _rule("2.5", "conv", ["conv2d_backward"], [CONVOLUTION, AUTOGRAD],
              _CONV_NOTE + " (conv_transpose2d and torch.nn.grad.conv2d_input among them), and neither is autograd; "
              "index_add_ and scatter_add_ are allowed.", AUTOGRAD_EXEMPT),
        _rule("2.6", "conv", ["max_pool2d", "max_pool2d_backward"], [POOLING, CONVOLUTION, AUTOGRAD],
              "F.pad (value=-inf), Tensor.unfold, as_strided, F.unfold/F.fold, amax, max, argmax, gather, scatter_add_ "
              "and index_add_ are allowed; the library's pooling in any spelling (F.*pool*, torch.*pool*, nn.*Pool*, "
              "max_unpool), its convolutions and autograd are not.", AUTOGRAD_EXEMPT),
        _rule("2.7", "conv", ["avg_pool2d", "avg_pool2d_backward"], [POOLING, CONVOLUTION, AUTOGRAD],
              "F.pad, Tensor.unfold, as_strided, F.unfold/F.fold, mean, sum, expand and index_add_ are allowed; the "
              "library's pooling in any spelling (F.interpolate's area mode among them), its convolutions (a box "
              "filter is an average pool) and autograd are not.", AUTOGRAD_EXEMPT),
        _rule("4.2", "models", ["channel_window_sum", "LocalResponseNormFunction.forward", "LocalResponseNormFunction.backward"],
              [LOCAL_RESPONSE_NORM, AUTOGRAD],
              "F.pad, slices, sum, cumsum, pow and, for the window sum only, pooling or convolution are allowed, "
              "and so is torch.autograd.Function with ctx.save_for_backward; F.local_response_norm, "
              "nn.LocalResponseNorm, nn.CrossMapLRN2d, labs.provided.fast_lrn and autograd in the backward are not.",
              AUTOGRAD_EXEMPT),
    )
}


@dataclass(frozen=True)
class Flag:
    """One reason to withhold a by-hand exercise's points, with where it was read."""

    exercise: str  # "2.4"
    path: str  # as given for the module, e.g. "labs/conv.py"
    line: int
    what: str  # "calls torch.nn.functional.conv2d (in _helper, which conv2d uses)"
    why: str  # "this exercise is written by hand (see its docstring)"

    def message(self) -> str:
        return f"exercise {self.exercise} {self.what} at {self.path}:{self.line}; {self.why}"


WHY_FORBIDDEN = "this exercise is written by hand (see its docstring)"
WHY_OPAQUE = ("the grader reads by-hand exercises from their source and cannot read through it, so by-hand "
              "exercises may not use it (see the exercise's docstring)")
WHY_IMPORT = ("a submission may import torch, the standard modules its docstrings list, labs.provided's helpers "
              "and the other exercise modules, nothing else")
WHY_REFLECTIVE = "that module looks code up by name or runs it, which a reading of the source cannot follow"
WHY_GRADER = "a submission may not reach the grader, its tests or the reference solutions"
WHY_PROBE = "it would tamper with the grader's run-time checks"
_ALWAYS = (WHY_OPAQUE, WHY_GRADER, WHY_PROBE)  # verdicts on a name whatever the exercise
MODULE_WIDE = " (at module level, so it counts against every by-hand exercise of this module)"


def check_source(source: str, path: str, module: str,
                 catalog_functions: Mapping[str, list[str]] | None = None) -> dict[str, list[Flag]]:
    """Flags for each by-hand exercise of one exercise module, read from its source.

    Args:
        source: the module's text.
        path: how messages name the file, e.g. "labs/conv.py".
        module: "basics", "mlp", "conv" or "models".
        catalog_functions: {exercise id: functions} from the catalog, to override RULES' lists.

    Returns:
        {exercise id: flags} for every by-hand exercise of `module`; an empty list is a pass.
        Code the module takes from another exercise module is not followed: use check_submission.
    """
    return check_submission({module: (source, path)}, catalog_functions)


def check_submission(files: Mapping[str, tuple[str, str]],
                     catalog_functions: Mapping[str, list[str]] | None = None) -> dict[str, list[Flag]]:
    """Flags for each by-hand exercise of the given modules, following names across them.

    Args:
        files: {module: (source, path)}, e.g. {"conv": (text, "labs/conv.py"), ...}.
        catalog_functions: as for check_source.

    Returns:
        {exercise id: flags} for every by-hand exercise of the given modules.
    """
    readings: dict[str, _Reading | None] = {}
    for module, (source, path) in files.items():
        try:
            readings[f"labs.{module}"] = _Reading(source, path, f"labs.{module}")
        except (SyntaxError, ValueError, RecursionError):
            readings[f"labs.{module}"] = None  # its tests fail anyway
    world = _World(readings)
    result: dict[str, list[Flag]] = {}
    for rule in RULES.values():
        if rule.module not in files:
            continue
        reading = readings[f"labs.{rule.module}"]
        functions = tuple((catalog_functions or {}).get(rule.exercise, rule.functions))
        result[rule.exercise] = [] if reading is None else world.flags(rule, reading, functions)
    return result


# ---------------------------------------------------------------- patterns


@lru_cache(maxsize=None)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern | None:
    return re.compile("|".join(translate(p) for p in patterns)) if patterns else None


def _matches(patterns: tuple[str, ...], name: str) -> bool:
    regex = _compiled(patterns)
    return bool(regex and any(regex.match(candidate) for candidate in _spellings(name)))


def _exempt(patterns: tuple[str, ...], name: str) -> bool:
    """An exemption holds for the name as torch finally resolves it (torch.autograd.function.torch.autograd.grad
    is torch.autograd.grad, which no exemption covers)."""
    regex = _compiled(patterns)
    return bool(regex and regex.match(name))


def _spellings(dotted: str) -> list[str]:
    """`dotted`, and torch reached again through a submodule's own names: "torch.nn.functional.torch.autograd.grad"
    is also "torch.autograd.grad", "torch.autograd.function.Tensor.backward" also "torch.Tensor.backward"."""
    parts = dotted.split(".")
    found = [dotted]
    if parts[0] == "torch":
        for i in range(1, len(parts)):
            if parts[i] == "torch":
                found.append(".".join(parts[i:]))
            elif parts[i] in ("Tensor", "functional", "autograd", "func") and parts[i - 1] != "torch":
                found.append(".".join(["torch", *parts[i:]]))
    return found


def _prefixes(dotted: str) -> Iterable[str]:
    parts = dotted.split(".")
    return (".".join(parts[:i]) for i in range(len(parts), 0, -1))


def _private(dotted: str) -> bool:
    """A private name of a library (torch._C, typing._eval_type): internals, often a way around the public names."""
    parts = dotted.split(".")
    return parts[0] != "labs" and any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts[1:])


def _import_verdict(dotted: str) -> str | None:
    """None when a submission may import (or name) `dotted`; else why not."""
    parts = dotted.split(".")
    root = parts[0]
    if _matches(PROBE_NAMES, dotted):
        return WHY_PROBE
    if root == "labs":
        if len(parts) == 1 or parts[1] in EXERCISE_MODULES:
            return None
        if parts[1] == "provided" and (len(parts) == 2 or parts[2] in STUDENT_HELPERS):
            return None
        return WHY_GRADER
    if root in GRADER_ROOTS:
        return WHY_GRADER
    if root == "torch":
        return WHY_OPAQUE if _private(dotted) or _matches(OPAQUE_TORCH, dotted) else None
    if root in ALLOWED_IMPORTS:
        return WHY_OPAQUE if _private(dotted) or _matches(OPAQUE_STANDARD, dotted) else None
    return WHY_REFLECTIVE if root in REFLECTIVE_MODULES else WHY_IMPORT


# ---------------------------------------------------------------- reading one module


@dataclass
class _Event:
    kind: str  # "name": a dotted name; "attr": an attribute of an unnamed object; "leaf": a looked-up name; "flag": always
    name: str
    line: int
    called: bool = False
    why: str = ""  # for "flag" events


class _Unit:
    """A piece of a module that runs as one: a function, a class's own body, a module-level statement."""

    def __init__(self, kind: str, label: str, line: int, owner: str | None = None):
        self.kind = kind  # "function", "class", "method" or "statement"
        self.label = label  # "conv2d", "LocalResponseNormFunction.forward", "line 12"
        self.line = line
        self.owner = owner  # the class of a method
        self.events: list[_Event] = []
        self.refs: set[str] = set()  # module-level names it reads
        self.external: set[str] = set()  # dotted names under labs.* it reads
        self.attributes: set[str] = set()  # attribute names it reads (for same-class methods)
        self.binds: set[str] = set()  # module-level names it binds or changes
        self.module_wide = False  # opaque at module level: counts against every exercise of the module


@dataclass
class _Binding:
    kind: str  # "import" (a dotted name), "alias" (an expression), "def", "class", "other"
    dotted: str = ""
    expr: ast.expr | None = None


class _Reading:
    """One module's source, parsed: its units and its module-level names."""

    def __init__(self, source: str, path: str, dotted: str, trusted: bool = False):
        self.path, self.dotted, self.trusted = path, dotted, trusted
        self.package = dotted.rsplit(".", 1)[0]
        tree = ast.parse(source)
        self.future_annotations = any(
            isinstance(s, ast.ImportFrom) and s.module == "__future__" and any(a.name == "annotations" for a in s.names)
            for s in tree.body
        )
        self.bindings: dict[str, list[_Binding]] = {}
        self.stars: list[tuple[str, int]] = []  # (module, line) of `from module import *`
        self.modules: set[str] = set(MODULES)
        self.units: list[_Unit] = []
        self.classes: dict[str, tuple[_Unit, dict[str, _Unit]]] = {}  # name -> (its body, its methods)
        self.class_nodes: dict[str, ast.ClassDef] = {}
        self._resolving: set[int] = set()
        self._cache: dict[str, tuple[frozenset, bool]] = {}
        pending: list[tuple[_Unit, ast.AST, list[ast.AST]]] = []
        self._split(tree.body, pending)
        for unit, node, parts in pending:
            _UnitReader(self, unit).read(node, parts)
        self.binders: dict[str, list[_Unit]] = {}
        for unit in self.units:
            for name in unit.binds:
                self.binders.setdefault(name, []).append(unit)

    # -- pass 1: units and module-level bindings

    def _split(self, body: list[ast.stmt], pending: list) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                unit = self._unit("function", stmt.name, stmt.lineno)
                unit.binds.add(stmt.name)
                self._bind(stmt.name, _Binding("def"))
                pending.append((unit, stmt, []))
            elif isinstance(stmt, ast.ClassDef):
                shell = self._unit("class", stmt.name, stmt.lineno)
                shell.binds.add(stmt.name)
                self._bind(stmt.name, _Binding("class"))
                methods = {}
                for item in stmt.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        method = self._unit("method", f"{stmt.name}.{item.name}", item.lineno, owner=stmt.name)
                        methods[item.name] = method
                        pending.append((method, item, []))
                self.classes[stmt.name] = (shell, methods)
                self.class_nodes[stmt.name] = stmt
                pending.append((shell, stmt, []))
            elif isinstance(stmt, _COMPOUND):
                header = [getattr(stmt, f) for f in ("test", "target", "iter", "subject") if getattr(stmt, f, None) is not None]
                header += list(getattr(stmt, "items", []))
                header += [h.type for h in getattr(stmt, "handlers", []) if h.type is not None]
                for case in getattr(stmt, "cases", []):
                    header += [case.pattern] + ([case.guard] if case.guard is not None else [])
                unit = self._unit("statement", f"line {stmt.lineno}", stmt.lineno)
                self._bind_others(header)
                for handler in getattr(stmt, "handlers", []):
                    if handler.name:
                        self._bind(handler.name, _Binding("other"))
                        unit.binds.add(handler.name)
                pending.append((unit, stmt, header))
                for field in ("body", "orelse", "finalbody"):
                    self._split(getattr(stmt, field, []) or [], pending)
                for handler in getattr(stmt, "handlers", []):
                    self._split(handler.body, pending)
                for case in getattr(stmt, "cases", []):
                    self._split(case.body, pending)
            else:
                unit = self._unit("statement", f"line {stmt.lineno}", stmt.lineno)
                self._bind_statement(stmt)
                pending.append((unit, stmt, [stmt]))

    def _unit(self, kind: str, label: str, line: int, owner: str | None = None) -> _Unit:
        unit = _Unit(kind, label, line, owner)
        self.units.append(unit)
        return unit

    def _bind(self, name: str, binding: _Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)

    def _bind_statement(self, stmt: ast.stmt) -> None:
        """What a module-level statement binds, for resolving names: imports and plain aliases by value."""
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    self._bind(alias.asname, _Binding("import", alias.name))
                else:
                    root = alias.name.split(".")[0]
                    self._bind(root, _Binding("import", root))
                parts = alias.name.split(".")
                self.modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
            return
        if isinstance(stmt, ast.ImportFrom):
            base = self.import_base(stmt)
            for alias in stmt.names:
                if alias.name == "*":
                    self.stars.append((base, stmt.lineno))
                    continue
                self._bind(alias.asname or alias.name, _Binding("import", f"{base}.{alias.name}" if base else alias.name))
            return
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                for name, value in _pairs(target, stmt.value):
                    self._bind(name, _Binding("alias", expr=value) if _is_chain(value) else _Binding("other"))
            others = [t for t in targets if not isinstance(t, (ast.Name, ast.Tuple, ast.List))]
            self._bind_others([stmt.value, *others])
            return
        self._bind_others([stmt])

    def _bind_others(self, nodes: list[ast.AST]) -> None:
        """Names bound at module level by anything but an import or a plain assignment."""
        for name in _stored_names(nodes):
            self._bind(name, _Binding("other"))

    def import_base(self, stmt: ast.ImportFrom) -> str:
        if not stmt.level:
            return stmt.module or ""
        parts = self.package.split(".")
        if stmt.level > len(parts):
            return "." * stmt.level + (stmt.module or "")  # outside the package: an import verdict refuses it
        base = ".".join(parts[: len(parts) - stmt.level + 1])
        return f"{base}.{stmt.module}" if stmt.module else base

    # -- names at module level

    def resolve_global(self, name: str) -> tuple[frozenset, bool]:
        """(dotted names `name` may stand for at module level, whether it may also be something unnamed)."""
        if name in self._cache:
            return self._cache[name]
        self._cache[name] = (frozenset(), True)  # a cycle of aliases names nothing
        dotted, unknown = set(), False
        bindings = self.bindings.get(name)
        if bindings:
            for binding in bindings:
                if binding.kind == "import":
                    dotted.add(binding.dotted)
                elif binding.kind == "alias":
                    more, vague = _UnitReader(self, _Unit("statement", "", 0)).resolve(binding.expr, [])
                    dotted |= more
                    unknown |= vague
                elif binding.kind in ("def", "class"):
                    dotted.add(f"{self.dotted}.{name}")
                else:
                    unknown = True
        elif self.stars:
            dotted |= {f"{module}.{name}" for module, _ in self.stars}
            unknown = True
        elif hasattr(builtins, name):
            dotted.add(f"builtins.{name}")
        else:
            unknown = True
        self._cache[name] = (frozenset(dotted), unknown)
        return self._cache[name]

    def class_chain(self, name: str, seen: frozenset = frozenset()) -> list[set[str] | None]:
        """The names defined by class `name` and its bases in this module; None for each base outside it."""
        node = self.class_nodes.get(name)
        if node is None or name in seen:
            return [None]
        chain: list[set[str] | None] = [_stored_names(node.body)]
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in self.class_nodes:
                chain += self.class_chain(base.id, seen | {name})
            elif not (isinstance(base, ast.Name) and base.id == "object"):
                chain.append(None)
        return chain

    def data_global(self, name: str) -> bool:
        """A module-level name bound only by statements (a list, a dict...): others may change it."""
        bindings = self.bindings.get(name)
        return bool(bindings) and all(b.kind == "other" for b in bindings)

    def exports(self, name: str) -> tuple[set[str], bool]:
        """What `module.name` is, for a reader in another module: (dotted names it re-exports, whether it is its own)."""
        bindings = self.bindings.get(name, [])
        dotted: set[str] = set()
        own = not bindings
        for binding in bindings:
            if binding.kind == "import":
                dotted.add(binding.dotted)
            elif binding.kind == "alias":
                found, vague = self.resolve_global(name)
                dotted |= set(found)
                own |= vague
            else:
                own = True
        return dotted, own


_COMPOUND = tuple(  # statements with bodies: their headers are one unit, their bodies are split further
    getattr(ast, name) for name in ("If", "While", "For", "AsyncFor", "With", "AsyncWith", "Try", "TryStar", "Match")
    if hasattr(ast, name)
)
_NOISE = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.Constant)


def _children(node: ast.AST) -> Iterable[ast.AST]:
    """ast.iter_child_nodes without the nodes that hold no names (contexts, operators, constants): a third fewer."""
    for field in node._fields:
        value = getattr(node, field, None)
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ast.AST) and not isinstance(item, _NOISE):
                    yield item
        elif isinstance(value, ast.AST) and not isinstance(value, _NOISE):
            yield value


def _is_chain(node: ast.AST) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def _pairs(target: ast.AST, value: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, value) for each name a plain assignment binds; values that cannot be paired are the whole value."""
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, (ast.Tuple, ast.List)):
        if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts) and not any(
            isinstance(e, ast.Starred) for e in target.elts
        ):
            return [pair for t, v in zip(target.elts, value.elts) for pair in _pairs(t, v)]
        return [(name, ast.Constant(None)) for name in _stored_names([target])]
    return []


def _stored_names(nodes: list[ast.AST]) -> set[str]:
    """Names stored by these nodes in their own scope (not inside functions, lambdas, classes or comprehensions)."""
    names: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
            stack.append(node.value)
            continue
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            stack.extend(node.decorator_list)
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name.split(".")[0]) for a in node.names if a.name != "*")
            continue
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        stack.extend(_children(node))
    return names


def _locals_of(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, import_base) -> tuple[dict[str, list], set[str]]:
    """A function's local names, each with what it may hold: ("dotted", name), ("expr", node) or ("unknown",);
    and the names it declares global."""
    local: dict[str, list] = {}
    declared_global: set[str] = set()

    def add(name: str, source: tuple) -> None:
        local.setdefault(name, []).append(source)

    arguments = node.args
    params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    params += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    for param in params:
        add(param.arg, ("unknown",))
    positional = [*arguments.posonlyargs, *arguments.args]
    for param, default in zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults):
        add(param.arg, ("expr", default))
    for param, default in zip(arguments.kwonlyargs, arguments.kw_defaults):
        if default is not None:
            add(param.arg, ("expr", default))

    def walk(item: ast.AST) -> None:
        if isinstance(item, (ast.Global, ast.Nonlocal)):
            declared_global.update(item.names)
        elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(item.name, ("unknown",))
            outer = list(item.decorator_list)
            if isinstance(item, ast.ClassDef):
                outer += [*item.bases, *(k.value for k in item.keywords)]
            else:
                outer += [*item.args.defaults, *(d for d in item.args.kw_defaults if d is not None)]
            for expr in outer:
                walk(expr)
        elif isinstance(item, ast.Lambda):
            for expr in [*item.args.defaults, *(d for d in item.args.kw_defaults if d is not None)]:
                walk(expr)
        elif isinstance(item, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for generator in item.generators:  # the targets belong to the comprehension, not to the function
                walk(generator.iter)
                for condition in generator.ifs:
                    walk(condition)
            for field in ("elt", "key", "value"):
                if getattr(item, field, None) is not None:
                    walk(getattr(item, field))
        elif isinstance(item, (ast.Assign, ast.AnnAssign)) and item.value is not None:
            targets = item.targets if isinstance(item, ast.Assign) else [item.target]
            for target in targets:
                for name, value in _pairs(target, item.value):
                    add(name, ("expr", value) if _is_chain(value) else ("unknown",))
                if not isinstance(target, (ast.Name, ast.Tuple, ast.List)):
                    walk(target)
            walk(item.value)
        elif isinstance(item, ast.NamedExpr) and isinstance(item.target, ast.Name):
            add(item.target.id, ("expr", item.value) if _is_chain(item.value) else ("unknown",))
            walk(item.value)
        elif isinstance(item, ast.Import):
            for alias in item.names:
                name = alias.asname or alias.name.split(".")[0]
                add(name, ("dotted", alias.name if alias.asname else name))
        elif isinstance(item, ast.ImportFrom):
            base = import_base(item)
            for alias in item.names:
                if alias.name != "*":
                    add(alias.asname or alias.name, ("dotted", f"{base}.{alias.name}"))
        elif isinstance(item, ast.Name):
            if isinstance(item.ctx, (ast.Store, ast.Del)):
                add(item.id, ("unknown",))
        else:
            if isinstance(item, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and item.name:
                add(item.name, ("unknown",))
            elif isinstance(item, ast.MatchMapping) and item.rest:
                add(item.rest, ("unknown",))
            for child in _children(item):
                walk(child)

    for stmt in node.body if isinstance(node.body, list) else [node.body]:
        walk(stmt)
    for name in declared_global:
        local.pop(name, None)
    return local, declared_global


class _Scope:
    def __init__(self, kind: str, names: dict[str, list], declared_global: set[str] = frozenset()):
        self.kind, self.names, self.declared_global = kind, names, declared_global


class _UnitReader(ast.NodeVisitor):
    """Walks one unit: records the names it uses (resolved through imports and aliases) and what it binds."""

    def __init__(self, reading: _Reading, unit: _Unit):
        self.reading, self.unit = reading, unit
        self.scopes: list[_Scope] = []
        self.called: set[int] = set()  # ids of expressions that are called
        self.alias_values: set[int] = set()  # ids of plain-alias right-hand sides (a module there is fine)
        self.switched_off: set[int] = set()  # ids of calls that turn autograd off: requires_grad_(False) ...
        self.root: ast.AST | None = None

    _dispatch: dict[type, object] = {}

    def visit(self, node: ast.AST) -> None:
        method = self._dispatch.get(type(node))
        if method is None:
            method = getattr(type(self), "visit_" + type(node).__name__, type(self).generic_visit)
            self._dispatch[type(node)] = method
        method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        for child in _children(node):
            self.visit(child)

    # -- entry

    def read(self, node: ast.AST, parts: list[ast.AST]) -> None:
        self.root = node
        if self.unit.kind == "statement":
            for part in parts:
                self.visit(part)
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                self._star(node)
            if any(e.kind == "flag" or (e.kind == "name" and _import_verdict(e.name) in _ALWAYS) for e in self.unit.events):
                self.unit.module_wide = True  # what no exercise may do, done at import time
        elif self.unit.kind == "class":
            self._class_shell(node)
        else:
            self.visit(node)

    def _star(self, node: ast.ImportFrom) -> None:
        """`from M import *` after a definition rebinds it with M's: count M's names for those defined before."""
        base = self.reading.import_base(node)
        if base.startswith("labs."):
            return
        for unit in self.reading.units:
            if unit.line < node.lineno and unit.kind in ("function", "class", "statement") and unit is not self.unit:
                for name in unit.binds:
                    self.unit.binds.add(name)
                    self.unit.events.append(_Event("name", f"{base}.{name}", node.lineno))

    def _class_shell(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self.scopes.append(_Scope("class", {n: [("unknown",)] for n in _stored_names(node.body)}))
        for item in node.body:
            if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.visit(item)
        self.scopes.pop()

    # -- events

    def _event(self, kind: str, name: str, node: ast.AST, called: bool = False, why: str = "") -> None:
        self.unit.events.append(_Event(kind, name, getattr(node, "lineno", self.unit.line), called, why))

    def _flag(self, what: str, node: ast.AST, why: str = WHY_OPAQUE) -> None:
        self._event("flag", what, node, why=why)

    # -- resolution

    def _lookup(self, name: str) -> tuple[_Scope | None, int]:
        """The scope that holds `name` (None: module level), as Python finds it from the innermost scope."""
        for depth in range(len(self.scopes) - 1, -1, -1):
            scope = self.scopes[depth]
            if scope.kind == "class" and depth != len(self.scopes) - 1:
                continue
            if name in scope.declared_global:
                return None, -1
            if name in scope.names:
                return scope, depth
        return None, -1

    def resolve(self, node: ast.AST, scopes: list[_Scope] | None = None) -> tuple[set[str], bool]:
        """(dotted names `node` may stand for, whether it may also be something the reading cannot name)."""
        saved = self.scopes
        if scopes is not None:
            self.scopes = scopes
        try:
            return self._resolve(node)
        finally:
            self.scopes = saved

    def _resolve(self, node: ast.AST) -> tuple[set[str], bool]:
        if isinstance(node, ast.Name):
            scope, depth = self._lookup(node.id)
            if scope is None:
                found, vague = self.reading.resolve_global(node.id)
                return set(found), vague
            if id(node) in self.reading._resolving:
                return set(), True
            self.reading._resolving.add(id(node))
            try:
                dotted, unknown = set(), False
                for source in scope.names[node.id]:
                    if source[0] == "dotted":
                        dotted.add(source[1])
                    elif source[0] == "expr":
                        more, vague = self.resolve(source[1], self.scopes[: depth + 1])
                        dotted |= more
                        unknown |= vague
                    else:
                        unknown = True
                return dotted, unknown
            finally:
                self.reading._resolving.discard(id(node))
        if isinstance(node, ast.Attribute):
            dotted, unknown = self._resolve(node.value)
            return {f"{d}.{node.attr}" for d in dotted}, unknown
        literal = _literal_getattr(node)
        if literal is not None and self._builtin(node.func.id):
            dotted, unknown = self._resolve(node.args[0])
            return {f"{d}.{literal}" for d in dotted}, unknown
        return set(), True

    def _builtin(self, name: str) -> bool:
        scope, _ = self._lookup(name)
        return scope is None and not self.reading.bindings.get(name) and hasattr(builtins, name)

    def _is_global(self, name: str) -> bool:
        return self._lookup(name)[0] is None

    # -- scopes

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in PROBE_ATTRIBUTES:
            self._flag(f"defines {node.name}", node, WHY_PROBE)
        at_module_level = node is self.root and self.unit.kind == "function"
        if at_module_level and node.name in ("__getattr__", "__dir__"):
            self._flag(f"defines a module-level {node.name}", node)
            self.unit.module_wide = True
        elif self.unit.kind == "method" and node is self.root and node.name in ("__getattr__", "__getattribute__"):
            self._flag(f"defines {node.name}", node)
        for expr in [*node.decorator_list, *node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(expr)
        if not self.reading.future_annotations:
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.visit(arg.annotation)
            if node.returns is not None:
                self.visit(node.returns)
        if node is not self.root:
            self._store_name(node.name, node)
        names, declared_global = _locals_of(node, self.reading.import_base)
        self.scopes.append(_Scope("function", names, declared_global))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
            self.visit(expr)
        names, _ = _locals_of(node, self.reading.import_base)
        self.scopes.append(_Scope("function", names))
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:  # a class inside a function or a class body
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._store_name(node.name, node)
        self.scopes.append(_Scope("class", {n: [("unknown",)] for n in _stored_names(node.body)}))
        for item in node.body:
            self.visit(item)
        self.scopes.pop()

    def _comprehension(self, node) -> None:
        names = {n: [("unknown",)] for g in node.generators for n in _stored_names([g.target])}
        self.scopes.append(_Scope("comprehension", names))
        self.generic_visit(node)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    # -- imports

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._store_name(alias.asname or alias.name.split(".")[0], node)
            why = _import_verdict(alias.name)
            if why:
                self._flag(f"imports {alias.name}", node, why)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self.reading.import_base(node)
        if base.startswith("."):
            self._flag(f"imports {base}, outside the labs package", node, WHY_GRADER)
            return
        why = _import_verdict(base)
        if why:
            self._flag(f"imports {base}", node, why)
            return
        for alias in node.names:
            if alias.name == "*":
                continue
            self._store_name(alias.asname or alias.name, node)
            full = f"{base}.{alias.name}"
            why = _import_verdict(full)
            if why:
                self._flag(f"imports {full}", node, why)
            else:
                self._event("name", full, node)

    # -- names and attributes

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._store_name(node.id, node)
            return
        self._load_name(node, as_base=False)

    def _store_name(self, name: str, node: ast.AST) -> None:
        if self._is_global(name) and (
            self.unit.kind == "statement" or any(name in s.declared_global for s in self.scopes)
        ):
            self.unit.binds.add(name)

    def _load_name(self, node: ast.Name, as_base: bool) -> tuple[set[str], bool]:
        name = node.id
        if self._is_global(name):
            self.unit.refs.add(name)
            if name in OPAQUE_BUILTINS and not self.reading.bindings.get(name):
                self._flag(f"uses {name}" + ("()" if id(node) in self.called else ""), node)
                return set(), False
            if self._builtin(name):
                if name in NAME_BUILTINS and id(node) not in self.called:
                    self._flag(f"uses {name} as a value", node)
                return set(), False
        dotted, unknown = self._resolve(node)
        if not as_base:
            self._names(dotted, node, id(node) in self.called)
            self._module_value(dotted, node)
        return dotted, unknown

    def _names(self, dotted: Iterable[str], node: ast.AST, called: bool) -> None:
        for d in dotted:
            if not d.startswith("builtins."):
                self._event("name", d, node, called)
                if d.startswith("labs."):
                    self.unit.external.add(d)

    def _module_value(self, dotted: Iterable[str], node: ast.AST) -> None:
        if id(node) in self.alias_values:
            return
        for d in dotted:
            if d in self.reading.modules:
                self._flag(f"passes the module {d} around as a value", node)
                return

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, attributes = node, []
        while isinstance(root, ast.Attribute):
            attributes.append(root.attr)
            root = root.value
        attributes.reverse()
        self._chain(node, root, attributes, node.ctx)

    def _chain(self, node: ast.AST, root: ast.AST, attributes: list[str], ctx: ast.expr_context) -> None:
        if id(node) in self.switched_off:
            if isinstance(root, ast.Name):
                self._load_name(root, as_base=True)
            else:
                self.visit(root)
            return
        called = id(node) in self.called
        storing = isinstance(ctx, (ast.Store, ast.Del))
        for i, attribute in enumerate(attributes):
            self.unit.attributes.add(attribute)
            if attribute in PROBE_ATTRIBUTES:
                self._flag(f"uses .{attribute}", node, WHY_PROBE)
            elif attribute in OPAQUE_ATTRIBUTES:
                harmless = attribute == "__class__" and attributes[i + 1 : i + 2] and attributes[i + 1] in HARMLESS_AFTER_CLASS
                if not harmless:
                    self._flag(f"uses .{attribute}", node)
        if isinstance(root, ast.Name):
            dotted, unknown = self._load_name(root, as_base=True)
        else:
            self.visit(root)
            dotted, unknown = self._resolve(root)
        full = {f"{d}.{'.'.join(attributes)}" for d in dotted if not d.startswith("builtins.")}
        self._names(full, node, called)
        self._module_value(full, node)
        inherited = self._inherited(dotted, attributes)
        if unknown or dotted & TENSOR_CLASSES or inherited is not None:
            for i, attribute in enumerate(attributes):
                if i or inherited is None or attribute not in inherited:
                    self._event("attr", attribute, node, called and i == len(attributes) - 1)
        if storing:
            for f in full:
                why = _import_verdict(f)
                if f.split(".")[0] == "torch" and not f.startswith("torch.backends."):  # backends: settings, not functions
                    why = WHY_PROBE
                if why in _ALWAYS:
                    self._flag(f"assigns to {f}", node, why)
            if isinstance(root, ast.Name) and self._is_global(root.id):
                self.unit.binds.add(root.id)

    def _inherited(self, dotted: set[str], attributes: list[str]) -> set[str] | None:
        """For a class of this module with a base the reading cannot follow (torch.Tensor, nn.Module ...): the names
        its own bodies define; attributes beyond them come from the library (T.softmax for T(torch.Tensor))."""
        prefix = f"{self.reading.dotted}."
        for d in dotted:
            name = d[len(prefix):] if d.startswith(prefix) else ""
            if name in self.reading.classes:
                own, library = set(), False
                for cls in self.reading.class_chain(name):
                    if cls is None:
                        library = True
                    else:
                        own |= cls
                if library:
                    return own
        return None

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            base = node.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name) and self._is_global(base.id):
                self.unit.binds.add(base.id)
        self.generic_visit(node)

    # -- calls and assignments

    def visit_Call(self, node: ast.Call) -> None:
        self.called.add(id(node.func))
        func = node.func
        if isinstance(func, ast.Name) and func.id in NAME_BUILTINS and self._builtin(func.id):
            self.unit.refs.add(func.id)
            literal = _literal_getattr(node)
            if literal is not None:
                ctx = ast.Store() if func.id in ("setattr", "delattr") else ast.Load()
                self._chain(node, node.args[0], literal.split("."), ctx)
                for expr in [*node.args[2:], *(k.value for k in node.keywords)]:
                    self.visit(expr)
                return
            self._flag(f"calls {func.id} with a computed attribute name", node)
            for expr in [*node.args, *(k.value for k in node.keywords)]:
                self.visit(expr)
            return
        dotted, _ = self._resolve(func)
        if dotted & {"operator.attrgetter", "operator.methodcaller"}:
            names = node.args[:1] if "operator.methodcaller" in dotted else node.args
            if names and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in names):
                for literal in names:
                    for part in literal.value.split("."):
                        self._event("leaf", part, node, True)
                        if part in OPAQUE_ATTRIBUTES or part in PROBE_ATTRIBUTES:
                            self._flag(f"looks up .{part}", node)
            else:
                self._flag("calls operator.attrgetter or methodcaller with a computed name", node)
        if node.args and _is_false(node.args[0]) and (
            (isinstance(func, ast.Attribute) and func.attr == "requires_grad_") or dotted & _GRAD_SWITCHES
        ):
            self.switched_off.add(id(func))  # autograd turned off, not on
        for keyword in node.keywords:
            if keyword.arg == "requires_grad" and not _is_false(keyword.value):
                self._event("attr", "requires_grad=True", keyword.value)
        self._mutation(func, node.args)
        self.generic_visit(node)

    def _mutation(self, func: ast.AST, args: list[ast.AST]) -> None:
        """A call may change a module-level container that it is handed or whose method it is."""
        candidates = [a for a in args if isinstance(a, ast.Name)]
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            candidates.append(func.value)
        for name in candidates:
            if self._is_global(name.id) and self.reading.data_global(name.id):
                self.unit.binds.add(name.id)

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        if value is not None:
            for target in targets:
                # a module bound in a class body or on an instance hides what is later called on it
                hidden = self.unit.kind == "class" or isinstance(target, ast.Attribute) or any(
                    scope.kind == "class" for scope in self.scopes)
                for _, paired in _pairs(target, value):
                    if _is_chain(paired) and not hidden:
                        self.alias_values.add(id(paired))
                if isinstance(target, ast.Attribute) and target.attr == "requires_grad" and not _is_false(value):
                    self._event("attr", "requires_grad=True", target)
            self.visit(value)
        for target in targets:
            self.visit(target)
        if isinstance(node, ast.AnnAssign) and not self.reading.future_annotations and not self.scopes:
            self.visit(node.annotation)

    visit_AnnAssign = visit_AugAssign = visit_Assign

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        if _is_chain(node.value):
            self.alias_values.add(id(node.value))
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            name = node.target.id
            in_function = any(s.kind == "function" for s in self.scopes)
            if not in_function:
                self.unit.binds.add(name)


_GRAD_SWITCHES = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled", "torch.autograd.grad_mode.set_grad_enabled"}


def _literal_getattr(node: ast.AST) -> str | None:
    """The attribute name of getattr(x, "name"), setattr(x, "name", v) ...; None if not that form."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in NAME_BUILTINS
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    ):
        return node.args[1].value
    return None


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


# ---------------------------------------------------------------- following names, and judging


@lru_cache(maxsize=16)
def _helper_reading(path: str, mtime: float, dotted: str) -> _Reading:
    """A student helper of the grader's own checkout, parsed once per version of the file."""
    return _Reading(Path(path).read_text(), f"labs/provided/{dotted.rsplit('.', 1)[1]}.py", dotted, trusted=True)


_RANK = {"flag": 0, "name": 1, "attr": 2, "leaf": 3}  # which reason a line reports, when it has several


class _World:
    """The readings of one submission, plus the grader's own student helpers, read when named."""

    def __init__(self, readings: dict[str, _Reading | None]):
        self.readings = dict(readings)
        self.helpers_dir = Path(__file__).resolve().parents[2] / "provided"

    def reading(self, dotted_module: str) -> _Reading | None:
        if dotted_module in self.readings:
            return self.readings[dotted_module]
        reading = None
        parts = dotted_module.split(".")
        if len(parts) == 3 and parts[:2] == ["labs", "provided"] and parts[2] in STUDENT_HELPERS:
            path = self.helpers_dir / f"{parts[2]}.py"
            try:
                reading = _helper_reading(str(path), path.stat().st_mtime, dotted_module)
            except (OSError, SyntaxError, ValueError, RecursionError):
                reading = None
        self.readings[dotted_module] = reading
        return reading

    def split(self, dotted: str) -> tuple[_Reading | None, str, str]:
        """(the reading a labs.* name lives in, or None; its module; the rest of the name)."""
        parts = dotted.split(".")
        for size in (3, 2):
            if len(parts) > size - 1 and parts[0] == "labs":
                module = ".".join(parts[:size])
                if (size == 3 and parts[1] == "provided") or (size == 2 and parts[1] in EXERCISE_MODULES):
                    return self.reading(module), module, ".".join(parts[size:])
        return None, "", dotted

    def canonical(self, dotted: str) -> tuple[set[str], bool]:
        """The names `dotted` stands for once re-exports through labs.* modules are followed; and whether
        one of them could not be followed (a module that was not given)."""
        done, frontier, lost = set(), {dotted}, False
        for _ in range(8):
            following = set()
            for name in frontier:
                if not name.startswith("labs."):
                    done.add(name)
                    continue
                reading, module, rest = self.split(name)
                if not rest:
                    done.add(name)
                    continue
                if reading is None:
                    lost |= bool(module) and "." in rest
                    done.add(name)
                    continue
                head, _, tail = rest.partition(".")
                targets, own = reading.exports(head)
                if own or not targets:
                    done.add(name)
                following |= {t + (f".{tail}" if tail else "") for t in targets}
            frontier = following - done
            if not frontier:
                break
        return done | frontier, lost

    # -- reachability

    def reached(self, reading: _Reading, functions: tuple[str, ...]) -> dict[int, tuple[_Reading, _Unit, str]]:
        """Every unit the functions reach, with its reading and how it was reached."""
        seen: dict[int, tuple[_Reading, _Unit, str]] = {}
        queue: list[tuple[_Reading, _Unit, str]] = []

        def add(r: _Reading, unit: _Unit, via: str) -> None:
            if id(unit) not in seen:
                seen[id(unit)] = (r, unit, via)
                queue.append((r, unit, via))

        def add_name(r: _Reading, name: str, via: str, whole_class: bool = True) -> None:
            for unit in r.binders.get(name, []):
                if unit.kind == "class" and whole_class:
                    for method in r.classes[name][1].values():
                        add(r, method, via)
                add(r, unit, via)

        for function in functions:
            owner, _, method = function.rpartition(".")
            if owner and owner in reading.classes:
                shell, methods = reading.classes[owner]
                if method in methods:
                    add(reading, methods[method], "")
                add(reading, shell, "")
                for unit in reading.binders.get(owner, []):
                    if unit is not shell:
                        add(reading, unit, "")
            else:
                add_name(reading, function, "")
        while queue:
            r, unit, via = queue.pop()
            label = via or unit.label
            for name in unit.refs:
                add_name(r, name, label)
            if unit.owner:
                shell, methods = r.classes[unit.owner]
                for attribute in unit.attributes & methods.keys():
                    add(r, methods[attribute], label)
            for dotted in unit.external:
                for name in self.canonical(dotted)[0]:
                    other, _, rest = self.split(name)
                    if other is not None and rest:
                        add_name(other, rest.split(".")[0], label)
        return seen

    def flags(self, rule: Rule, reading: _Reading, functions: tuple[str, ...]) -> list[Flag]:
        dotted_forbidden = tuple(p for p in rule.forbidden if not p.startswith("."))
        attribute_forbidden = tuple(p[1:] for p in rule.forbidden if p.startswith("."))
        leaves = tuple(  # for names looked up on an object the reading cannot name; "*" alone would match anything
            leaf for leaf in [p.rsplit(".", 1)[-1] for p in dotted_forbidden] + list(attribute_forbidden)
            if len(re.sub(r"[^A-Za-z]", "", leaf)) >= 3
        )
        own = set(functions) | {f.rpartition(".")[0] for f in functions if "." in f}
        reached = self.reached(reading, functions)
        for unit in reading.units:  # module level: opaque code counts against all; so does code that binds nothing
            if unit.module_wide or (unit.kind == "statement" and not unit.binds and unit.events):
                reached.setdefault(id(unit), (reading, unit, ""))
        found: dict[tuple, Flag] = {}
        for r, unit, via in reached.values():
            where = ""
            if r is not reading:
                where = f" (in {r.dotted}.{unit.label}, which {via or 'it'} uses)"
            elif unit.kind != "statement" and unit.label not in own:
                where = f" (in {unit.label}, which {via or 'it'} uses)"
            wide = MODULE_WIDE if unit.module_wide else ""
            for event in sorted(unit.events, key=lambda e: (e.line, _RANK[e.kind])):
                verdict = self._judge(event, r, dotted_forbidden, attribute_forbidden, leaves, rule.exempt)
                if verdict is not None:
                    what, why = verdict
                    flag = Flag(rule.exercise, r.path, event.line, what + where, why + (wide if why != WHY_FORBIDDEN else ""))
                    found.setdefault((flag.path, flag.line), flag)  # one reason a line is enough
        return sorted(found.values(), key=lambda f: (f.path != reading.path, f.path, f.line))

    def _judge(self, event: _Event, reading: _Reading, dotted_forbidden, attribute_forbidden, leaves, exempt):
        """(what, why) when the event counts against the exercise, else None."""
        verb = "calls" if event.called else "uses"
        if event.kind == "flag":
            return None if reading.trusted else (event.name, event.why)
        if event.kind == "attr":
            if _matches(attribute_forbidden, event.name):
                if event.name == "requires_grad=True":
                    return "sets requires_grad=True", WHY_FORBIDDEN
                return f"{verb} the tensor method .{event.name}", WHY_FORBIDDEN
            return None
        if event.kind == "leaf":
            if _matches(leaves, event.name):
                return f"looks up .{event.name} by name", WHY_FORBIDDEN
            return None
        names, lost = self.canonical(event.name)
        for name in sorted(names):
            shown = name if name == event.name else f"{name} (as {event.name})"
            if not reading.trusted:
                why = _import_verdict(name)  # a module off the list counts once, at its import, unless reached by re-export
                if why in _ALWAYS or (why is not None and name != event.name):
                    return f"{verb} {shown}", why
            if any(_matches(dotted_forbidden, p) for p in _prefixes(name)) and not any(
                _exempt(exempt, p) for p in _prefixes(_spellings(name)[-1])
            ):
                return f"{verb} {shown}", WHY_FORBIDDEN
        if lost and _matches(leaves, event.name.rsplit(".", 1)[-1]):
            return f"{verb} {event.name}", WHY_FORBIDDEN
        return None
