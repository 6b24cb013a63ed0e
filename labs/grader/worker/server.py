"""The worker side of grading: the only process that imports and runs a student's code.

(The threat model is stated once, in labs/grader/__init__.py.)

It knows nothing of tests or points. It receives requests over one channel (see channel.py),
runs them and sends back data:

    {"op": "import", "module": "conv"}                     -> a reference to labs.conv
    {"op": "getattr" | "setattr" | "delattr", "target", "name", ["value"]}
    {"op": "call", "target", "args", "kwargs", "ambient"}  -> the result, and the arguments it changed
    {"op": "reset"}                                          default torch state, for the next test
    {"op": "confinement"}                                    what confinement.confine applied (Confinement.as_data())

Ask for the confinement right after the worker starts, before the first "import": it is the
worker's own record, and student code could rewrite it once it runs.

`ambient` carries the grader's grad mode, default dtype and default device (`torch.no_grad()`,
`torch.device("meta")` around a call), so a test reads the same either way.

While a request runs, the worker may call the grader back (a reference function, a spy, a hook)
and the grader may call the worker again: both sides answer requests while they wait.

A zygote (`zygote_main`) imports torch once and forks one fresh worker per exercise, which
confines itself (confinement.py) before it imports a line of student code. The zygote removes
each worker's scratch folder when it ends it, and watches those folders meanwhile: a worker
whose folder is a plain folder (no mount namespace for a tmpfs of its own) is killed when it
writes more than its quota.
"""

from __future__ import annotations

import __future__
import ast
import importlib
import importlib.util
import json
import os
import select
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from labs.grader import confinement, reaping
from labs.grader.channel import (
    ChannelClosed,
    Decoder,
    Encoder,
    exception_from_data,
    exception_to_data,
    receive_message,
    resolve_name,
    send_message,
    tensors_in,
)

DEFAULT_THREADS = 1


class Worker:
    """Serves requests on `sock` until the grader closes it."""

    def __init__(self, sock: socket.socket, confinement: dict | None = None) -> None:
        self.sock = sock
        self.confinement = confinement or {}
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}  # id(object) -> reference number

    # ---- naming objects

    def name_object(self, value: Any) -> dict:
        """What is not data goes back as a reference into this worker's table, never as a name."""
        if isinstance(value, _Callback):
            return {"callback": value.number}
        number = self.ids.get(id(value))
        if number is None or self.objects.get(number) is not value:
            number = len(self.objects) + 1
            self.objects[number], self.ids[id(value)] = value, number
        kind = type(value)
        module = getattr(kind, "__module__", "") or ""
        name = kind.__qualname__ if module in ("builtins", "") else f"{module}.{kind.__qualname__}"
        return {"ref": number, "type": name[:100], "text": _short_repr(value), "callable": callable(value),
                "class": isinstance(value, type)}

    def resolve(self, tree: dict) -> Any:
        if "ref" in tree:
            if tree["ref"] not in self.objects:
                raise LookupError(f"no object number {tree['ref']} in this worker")
            return self.objects[tree["ref"]]
        if "callback" in tree:
            return _Callback(self, int(tree["callback"]))
        if "named" in tree:
            return resolve_name(tree["named"])
        raise ValueError(f"cannot decode {json.dumps(tree)[:80]}")

    # ---- serving

    def serve(self) -> None:
        while True:
            try:
                tree, tensors = receive_message(self.sock)
            except ChannelClosed:
                return
            self.answer(tree, tensors)

    def answer(self, tree: dict, tensors: list[torch.Tensor]) -> None:
        encoder = Encoder(self.name_object)
        try:
            reply = {"result": self.handle(tree, tensors, encoder)}
        except BaseException as error:  # noqa: BLE001 - all the student's code raises (sys.exit too) goes back as data
            encoder = Encoder(self.name_object)
            reply = {"error": exception_to_data(error)}
        send_message(self.sock, reply, encoder.tensors)

    def handle(self, request: dict, tensors: list[torch.Tensor], encoder: Encoder) -> Any:
        decoder = Decoder(tensors, self.resolve)
        op = request.get("op")
        if op == "import":
            return encoder.encode(import_exercise_module(str(request["module"])))
        if op == "reset":
            reset_torch_state()
            return None
        if op == "confinement":
            return encoder.encode(self.confinement)
        target = decoder.decode(request["target"])
        if op == "getattr":
            return encoder.encode(getattr(target, request["name"]))
        if op == "setattr":
            setattr(target, request["name"], decoder.decode(request["value"]))
            return None
        if op == "delattr":
            delattr(target, request["name"])
            return None
        if op == "call":
            args, kwargs = decoder.decode(request["args"]), decoder.decode(request["kwargs"])
            before = [(t, t.detach().clone()) for t in tensors_in((args, kwargs))]
            with _ambient(request.get("ambient", {})):
                result = target(*args, **kwargs)
            changed = [i for i, (t, copy) in enumerate(before) if _changed(t, copy)]
            return {
                "value": encoder.encode(result),
                "changed": [[i, encoder.encode(before[i][0])] for i in changed],
            }
        raise ValueError(f"unknown request {op!r}")

    def call_back(self, number: int, args: tuple, kwargs: dict) -> Any:
        """Run the grader's function `number` on these values, answering its requests meanwhile."""
        encoder = Encoder(self.name_object)
        tree = {"op": "callback", "callback": number, "args": encoder.encode(list(args)), "kwargs": encoder.encode(kwargs)}
        send_message(self.sock, tree, encoder.tensors)
        while True:
            reply, tensors = receive_message(self.sock)
            if "op" in reply:  # the grader calls us again while we wait
                self.answer(reply, tensors)
                continue
            decoder = Decoder(tensors, self.resolve)
            if "error" in reply:
                raise exception_from_data(reply["error"])
            return decoder.decode(reply["result"])


def _short_repr(value: Any) -> str:
    """How the object prints, for the grader's messages ("dtype('float32')"); never more than a line."""
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 - a __repr__ that raises is the student's: name the type instead
        text = f"<{type(value).__qualname__}>"
    text = " ".join(str(text).split())
    return text if len(text) <= 120 else text[:117] + "..."


class _Callback:
    """Stands in, inside the worker, for a function of the grader's."""

    def __init__(self, worker: Worker, number: int) -> None:
        self.worker, self.number = worker, number

    def __call__(self, *args, **kwargs):
        return self.worker.call_back(self.number, args, kwargs)


def _changed(tensor: torch.Tensor, copy: torch.Tensor) -> bool:
    if tensor.shape != copy.shape or tensor.dtype != copy.dtype:
        return True
    same = (tensor.detach() == copy) | (tensor.detach().isnan() & copy.isnan()) if tensor.is_floating_point() else tensor.detach() == copy
    return not bool(same.all())


class _ambient:
    """Grad mode, default dtype and default device as the grader had them around the call."""

    def __init__(self, ambient: dict) -> None:
        self.ambient = ambient

    def __enter__(self):
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(bool(self.ambient.get("grad", True)))
        torch.set_default_dtype(getattr(torch, self.ambient.get("dtype", "float32")))
        self.device = None
        if self.ambient.get("device", "cpu") != "cpu":
            self.device = torch.device(self.ambient["device"])
            self.device.__enter__()

    def __exit__(self, *exc):
        if self.device is not None:
            self.device.__exit__(*exc)
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)


def reset_torch_state() -> None:
    """What one test may have changed and the next must not inherit."""
    import random

    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    random.seed(0)
    torch.set_num_threads(DEFAULT_THREADS)
    torch.autograd.set_detect_anomaly(False)
    if torch.are_deterministic_algorithms_enabled():  # the call itself is slow (imports), so only when needed
        torch.use_deterministic_algorithms(False)


# ---------------------------------------------------------------- the zygote


PRELOAD = ("torch.nn.functional", "torch.autograd", "torch.autograd.gradcheck", "torch.overrides", "torch.utils.data",
           "torch.optim", "math", "random", "typing", "dataclasses", "collections", "functools", "itertools",
           "numpy", "labs.grader.worker.probes", "labs.grader.worker.references")


def _warm_up() -> None:
    """Run once what torch sets up lazily, so that no worker pays for it again.

    An optimizer's first step imports torch._dynamo (about a second); a first backward pass
    starts autograd's machinery. Tiny tensors: no thread pool starts before the fork.
    """
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    (weight * weight).sum().backward()
    optimizer.step()


def import_exercise_module(name: str) -> Any:
    """`labs.<name>`, the student's module, run one top-level statement at a time.

    As an import would, except where a statement raises: a definition that raises (a NameError in
    one function's default argument, an import of a module that does not exist) leaves in its
    place an object that raises the same error, with its line, when it is used, and the other
    statements still run. So a careless mistake in one exercise costs the exercises that use
    what it defines, not its whole module. A statement that raises and defines nothing (a bare
    `raise`, a failing call at module level) fails the import as before, and so does a syntax error.
    """
    full = f"labs.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec(full)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return importlib.import_module(full)
    source = Path(spec.origin).read_text(encoding="utf-8")
    tree = ast.parse(source, spec.origin)  # a SyntaxError goes back to the test as it is
    flags = 0
    for statement in tree.body:  # `from __future__ import annotations` must reach every statement's compilation
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            flags |= sum(getattr(__future__, alias.name).compiler_flag for alias in statement.names if hasattr(__future__, alias.name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        for statement in tree.body:
            code = compile(ast.Module(body=[statement], type_ignores=[]), spec.origin, "exec", flags=flags, dont_inherit=True)
            try:
                exec(code, module.__dict__)
            except Exception as error:
                names = _names_bound(statement)
                if not names:
                    raise
                why = f"line {statement.lineno} of labs/{name}.py raised {type(error).__name__}: {error}"
                for bound in names:
                    module.__dict__[bound] = _Undefined(bound, why)
    except BaseException:
        sys.modules.pop(full, None)
        raise
    setattr(sys.modules["labs"], name, module)
    return module


def _names_bound(statement: ast.stmt) -> list[str]:
    """The module-level names a top-level statement defines."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [statement.name]
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in statement.names if alias.name != "*"]
    targets = statement.targets if isinstance(statement, ast.Assign) else \
        [statement.target] if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) else []
    return [node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)]


class _Undefined:
    """What stands for a name whose definition raised: using it raises that error, with its line."""

    def __init__(self, name: str, why: str) -> None:
        self._error = f"{name} could not be defined: {why}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(self._error)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise ImportError(self._error)

    def __repr__(self) -> str:
        return f"<{self._error}>"


def zygote_main(control_fd: int, settings_json: str) -> None:
    """Fork one confined worker per request on the control socket; end them all on shutdown.

    Requests (one JSON line each, with file descriptors attached): "spawn" with the worker's
    channel and output pipe -> {"pid"}; "end" with a pid -> {"status", and "why" when the zygote
    killed it itself} after killing its group and every orphan; "shutdown". When the control
    socket closes (the trusted side ended, even by SIGKILL) it ends everything as on "shutdown".
    """
    settings = json.loads(settings_json)
    for name in PRELOAD:  # imported once here, so that every worker starts at once
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    _warm_up()
    reaping.become_subreaper()
    control = socket.socket(fileno=control_fd)
    statuses: dict[int, int] = {}
    scratch = _ScratchFolders(confinement.Limits(**settings["limits"]))
    if settings.get("scratch_root"):  # marked at once, not at the first spawn, when the trusted side says where it is
        scratch.first_of(Path(settings["scratch_root"]))
    try:
        while True:
            if not select.select([control], [], [], scratch.interval())[0]:
                scratch.watch()
                continue
            try:
                message, fds, _, _ = socket.recv_fds(control, 4096, 2)
            except OSError:
                message = b""
            if not message:
                break
            request = json.loads(message.decode())
            if request["op"] == "spawn":
                folder = Path(request["scratch"])
                scratch.first_of(folder.parent)
                pid = os.fork()
                if pid == 0:
                    control.close()
                    _worker_main(fds[0], fds[1], settings, request["scratch"])
                for fd in fds:
                    os.close(fd)
                scratch.add(pid, folder)
                control.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            elif request["op"] == "end":
                pid = int(request["pid"])
                reaping.kill_group(pid)
                statuses.update(reaping.wait_for(pid))  # gone: what it forked out of its group is an orphan now
                reaping.kill_children()
                statuses.update(reaping.reap())
                reply = {"status": statuses.pop(pid, None), **scratch.end(pid)}
                control.sendall(json.dumps(reply).encode() + b"\n")
            elif request["op"] == "shutdown":
                break
    finally:
        reaping.kill_children()
        scratch.remove_all()
    os._exit(0)


class _ScratchFolders:
    """The workers' scratch folders: removed when a worker ends, watched while it runs.

    A worker with a mount namespace writes into a tmpfs of its own, sized to the quota: seen from
    here its folder stays empty and the watch costs nothing. Without one, the folder is the
    disk's, and a worker that writes past `Limits.scratch_bytes` or `scratch_files` is killed.
    """

    WATCH_SECONDS = 0.5

    def __init__(self, limits: confinement.Limits) -> None:
        self.limits = limits
        self.folders: dict[int, Path] = {}
        self.why: dict[int, str] = {}
        self.root: Path | None = None

    def first_of(self, root: Path) -> None:
        """On the first spawn: mark our root, and remove those that killed zygotes left."""
        if self.root is not None or not root.name.startswith(reaping.SCRATCH_PREFIX):
            return
        self.root = root
        try:
            reaping.claim_scratch_root(root)
            reaping.sweep_scratch(root.parent, keep=root)
        except OSError:
            pass

    def add(self, pid: int, folder: Path) -> None:
        self.folders[pid] = folder

    def interval(self) -> float | None:
        return self.WATCH_SECONDS if self.folders else None

    def watch(self) -> None:
        for pid, folder in list(self.folders.items()):
            if pid in self.why:
                continue
            used, entries = reaping.scratch_use(folder, self.limits.scratch_files)
            if used > self.limits.scratch_bytes or entries > self.limits.scratch_files:
                self.why[pid] = (f"wrote more than its scratch folder may hold ({self.limits.scratch_bytes // 2**20} MiB, "
                                 f"{self.limits.scratch_files:,} files)")
                reaping.kill_group(pid)

    def end(self, pid: int) -> dict:
        folder = self.folders.pop(pid, None)
        if folder is not None:
            reaping.remove_tree(folder)
        why = self.why.pop(pid, None)
        return {"why": why} if why else {}

    def remove_all(self) -> None:
        for folder in self.folders.values():
            reaping.remove_tree(folder)
        self.folders.clear()
        if self.root is not None:
            reaping.remove_tree(self.root)


def _worker_main(channel_fd: int, output_fd: int, settings: dict, scratch: str) -> None:
    """In the forked child: confine, then serve. Never returns."""
    code = 0
    try:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.closerange(3, channel_fd)  # nothing of the zygote's or the grader's stays open
        os.closerange(channel_fd + 1, os.sysconf("SC_OPEN_MAX"))  # one close_range call on Linux 5.9+
        scratch_path = Path(scratch)
        os.chdir(scratch_path)
        for key in list(os.environ):
            if key not in {"PATH", "LANG", "LC_ALL", "TERM", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}:
                del os.environ[key]
        os.environ.update(HOME=scratch, TMPDIR=scratch, MPLBACKEND="Agg", LABS_FAST="1")
        sys.dont_write_bytecode = True  # the code folder is read-only to it (the zygote ran with -I, which ignores the variable)
        applied = confinement.confine(
            scratch_path,
            [Path(p) for p in settings["readable"]],
            confinement.Limits(**settings["limits"]),
            settings.get("uid"),
        )
        sys.path[:] = [settings["base"]] + [p for p in sys.path if p and Path(p).resolve() != Path(settings["repo"]).resolve()]
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower() and "editable" not in str(getattr(f, "__module__", "")).lower()]
        reset_torch_state()
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        Worker(socket.socket(fileno=channel_fd), applied.as_data()).serve()
    except BaseException:  # noqa: BLE001 - report and end; the grader sees the channel close
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
        code = 70
    finally:
        os._exit(code)

