"""The grader's side of the channel: student code seen through proxies, run in a worker.

The graded tests receive `RemoteModule`s in place of `labs.conv` and friends. Calling a
function of one sends the arguments to the worker (labs/grader/worker/server.py), which runs the student's
code and sends back data; the tests compare that data with what they compute themselves.
Objects that are not data (a model, a class) stay in the worker and are seen here as
`RemoteObject`s, whose attributes, calls and iteration go over the channel too.

Nothing here executes code that came from the worker: replies are decoded into tensors and
plain values (channel.py), exceptions are rebuilt from their type name and message, and the
worker's probes are named (channel.CROSSING_NAMES), never imported here.

One worker serves one exercise; `WorkerManager` starts a fresh one (forked by a zygote that
has imported torch once) when the exercise changes or the last one died, and kills it when
a test runs past its time limit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import torch

from labs.grader import confinement, reaping
from labs.grader.text import printable
from labs.grader.channel import (
    ChannelClosed,
    ChannelError,
    Decoder,
    Encoder,
    Named,
    crossing_name,
    exception_from_data,
    exception_to_data,
    receive_message,
    send_message,
    tensors_in,
)

MAX_OUTPUT = 64 * 1024  # bytes of a worker's printed output kept for one test


class WorkerLost(BaseException):
    """The worker ended during a test: the code crashed it, hung past the limit, or broke the channel.

    A BaseException, so that neither a test's `except Exception` nor hypothesis's shrinking
    (which would call the dead worker again) swallows it.
    """


# ---------------------------------------------------------------- the zygote


_BOOT = "import sys; sys.path.insert(0, sys.argv[3]); from labs.grader.worker.server import zygote_main; zygote_main(int(sys.argv[1]), sys.argv[2])"


class Zygote:
    """A process that imported torch once and forks a confined worker on request."""

    def __init__(self, base: Path, repo: Path, forbidden: list[Path], limits: confinement.Limits, log: Path) -> None:
        reaping.sweep_scratch()  # the roots of earlier runs that were killed before they could remove them
        self.scratch_root = Path(tempfile.mkdtemp(prefix="labs-scratch-"))
        os.chmod(self.scratch_root, 0o711)
        ours, theirs = socket.socketpair()
        settings = {
            "base": str(base),
            "repo": str(repo),
            "readable": [str(p) for p in [base, *confinement.readable_roots(forbidden + [self.scratch_root])]],
            "limits": limits.__dict__,
            "uid": confinement.sandbox_uid(),
            "scratch_root": str(self.scratch_root),  # marked with its owner at once, so a later run can sweep it
        }
        env = {k: v for k, v in os.environ.items() if k in {"PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        with open(log, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(theirs.fileno()), json.dumps(settings), str(base)],
                pass_fds=[theirs.fileno()], cwd=base, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )
        theirs.close()
        self.control = ours
        self.replies = ours.makefile("rb")
        self.lock = threading.Lock()

    def _ask(self, request: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            try:
                socket.send_fds(self.control, [json.dumps(request).encode()], list(fds))
                line = self.replies.readline()
            except OSError:
                line = b""
        if not line:
            raise ChannelClosed("the zygote ended")
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def spawn(self) -> tuple[socket.socket, int, int]:
        """A new worker: (its channel, its pid, the read end of its output)."""
        ours, theirs = socket.socketpair()
        read_fd, write_fd = os.pipe()
        scratch = tempfile.mkdtemp(dir=self.scratch_root)
        try:
            reply = self._ask({"op": "spawn", "scratch": scratch}, [theirs.fileno(), write_fd])
        finally:
            theirs.close()
            os.close(write_fd)
        return ours, int(reply["pid"]), read_fd

    def end(self, pid: int) -> dict:
        """Kill a worker with its whole group and every orphan: {"status": its wait status or None,
        "why": what the zygote saw, e.g. a scratch folder over its quota}."""
        try:
            reply = self._ask({"op": "end", "pid": pid})
            return reply if isinstance(reply, dict) else {"status": None}
        except ChannelClosed:
            reaping.kill_group(pid)
            return {"status": None}

    def shutdown(self) -> None:
        try:
            self._ask({"op": "shutdown"})
        except (ChannelClosed, ValueError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.control.close()
        _remove_tree(self.scratch_root)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- one worker


class Connection:
    """The channel to one worker: requests, callbacks and the worker's printed output."""

    def __init__(self, zygote: Zygote, sock: socket.socket, pid: int, output_fd: int) -> None:
        self.zygote, self.sock, self.pid = zygote, sock, pid
        self.callbacks: dict[int, Callable] = {}
        self.callback_numbers: dict[int, int] = {}
        self.proxies: dict[int, RemoteObject] = {}
        self.modules: dict[str, RemoteObject] = {}
        self.deadline = time.monotonic() + 3600
        self.limit = 3600.0
        self.ended: str | None = None
        self.output = bytearray()
        self.output_dropped = 0
        self.output_lock = threading.Lock()
        self.reader = threading.Thread(target=self._drain, args=(output_fd,), daemon=True)
        self.reader.start()

    def _drain(self, fd: int) -> None:
        """Read what the worker prints, keeping at most MAX_OUTPUT bytes per test."""
        with os.fdopen(fd, "rb", buffering=0) as stream:
            while chunk := stream.read(65536):
                with self.output_lock:
                    room = MAX_OUTPUT - len(self.output)
                    self.output += chunk[: max(room, 0)]
                    self.output_dropped += max(len(chunk) - max(room, 0), 0)

    def take_output(self) -> str:
        with self.output_lock:
            text = self.output.decode(errors="replace")
            if self.output_dropped:
                text += f"\n... [{self.output_dropped:,} more bytes of output dropped]"
            self.output, self.output_dropped = bytearray(), 0
        return text

    # ---- ending

    def end(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
            reply = self.zygote.end(self.pid)
            if why == "crashed":
                seen = str(reply.get("why") or "")[:300] or _status_text(reply.get("status"))
                self.ended = f"crashed the worker process that runs your code ({seen})"
            self.sock.close()

    def _lost(self, why: str) -> WorkerLost:
        self.end(why)
        return WorkerLost(f"this test {self.ended}")

    # ---- encoding

    def name_object(self, value: Any) -> dict:
        if isinstance(value, RemoteObject):
            if value._connection is not self:
                raise WorkerLost("this object belonged to a worker that has ended (an earlier crash or time-out)")
            return {"ref": value._number}
        if isinstance(value, RemoteModule):
            return {"ref": self.module(value._name)._number}
        name = crossing_name(value)
        if name is not None:
            return {"named": name}
        if callable(value):
            number = self.callback_numbers.get(id(value))
            if number is None:
                number = len(self.callbacks) + 1
                self.callbacks[number], self.callback_numbers[id(value)] = value, number
            return {"callback": number}
        raise TypeError(f"a {type(value).__name__} cannot be sent to the worker that runs the student's code (only data and functions)")

    def resolve(self, tree: dict) -> Any:
        if "ref" in tree:
            number = tree["ref"]
            if not isinstance(number, int):
                raise ChannelError("a reference must be a number")
            proxy = self.proxies.get(number)
            if proxy is None:
                proxy = self.proxies[number] = RemoteObject(self, number, str(tree.get("type", "object"))[:100], bool(tree.get("callable")),
                                                            printable(str(tree.get("text", "")))[:120])
            return proxy
        if "callback" in tree and tree["callback"] in self.callbacks:
            return self.callbacks[tree["callback"]]
        raise ChannelError(f"the worker sent an unknown value {json.dumps(tree)[:80]}")

    # ---- requests

    def request(self, tree: dict, encoder: Encoder) -> tuple[Any, Decoder]:
        if self.ended is not None:
            raise WorkerLost(f"an earlier call in this test {self.ended}")
        try:
            send_message(self.sock, tree, encoder.tensors)
        except OSError:
            raise self._lost("crashed") from None
        while True:
            reply, tensors = self._receive()
            decoder = Decoder(tensors, self.resolve)
            if reply.get("op") == "callback":
                self._run_callback(reply, decoder)
                continue
            if "error" in reply:
                raise exception_from_data(reply["error"])
            return reply.get("result"), decoder

    def _receive(self) -> tuple[dict, list[torch.Tensor]]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._lost(f"ran past its time limit of {self.limit:g} s (does your code loop forever?)")
        self.sock.settimeout(remaining)
        try:
            reply, tensors = receive_message(self.sock)
        except (socket.timeout, TimeoutError):
            raise self._lost(f"ran past its time limit of {self.limit:g} s (does your code loop forever?)") from None
        except (ChannelClosed, OSError):
            raise self._lost("crashed") from None
        except ChannelError as error:
            raise self._lost(f"broke the channel to the grader: {error}") from None
        if not isinstance(reply, dict):
            raise self._lost("broke the channel to the grader: a reply that is not a request or a result")
        return reply, tensors

    def _run_callback(self, request: dict, decoder: Decoder) -> None:
        function = self.callbacks.get(request.get("callback"))
        encoder = Encoder(self.name_object, plain=True)
        try:
            if function is None:
                raise LookupError(f"no grader function number {request.get('callback')}")
            args, kwargs = decoder.decode(request["args"]), decoder.decode(request["kwargs"])
            reply = {"result": encoder.encode(function(*args, **kwargs))}
        except Exception as error:  # the grader's function failed: the student's code sees the error
            encoder = Encoder(self.name_object)
            reply = {"error": exception_to_data(error)}
        try:
            send_message(self.sock, reply, encoder.tensors)
        except OSError:
            raise self._lost("crashed") from None

    def module(self, name: str) -> RemoteObject:
        if name not in self.modules:
            result, decoder = self.request({"op": "import", "module": name}, Encoder(self.name_object))
            self.modules[name] = decoder.decode(result)
        return self.modules[name]

    def getattr(self, target: Any, name: str) -> Any:
        encoder = Encoder(self.name_object)
        result, decoder = self.request({"op": "getattr", "target": encoder.encode(target), "name": name}, encoder)
        return decoder.decode(result)

    def setattr(self, target: Any, name: str, value: Any) -> None:
        encoder = Encoder(self.name_object)
        self.request({"op": "setattr", "target": encoder.encode(target), "name": name, "value": encoder.encode(value)}, encoder)

    def delattr(self, target: Any, name: str) -> None:
        encoder = Encoder(self.name_object)
        self.request({"op": "delattr", "target": encoder.encode(target), "name": name}, encoder)

    def call(self, target: Any, args: tuple, kwargs: dict) -> Any:
        encoder = Encoder(self.name_object)
        ambient = {
            "grad": torch.is_grad_enabled(),
            "dtype": str(torch.get_default_dtype()).removeprefix("torch."),
            "device": str(torch.get_default_device()) if hasattr(torch, "get_default_device") else "cpu",
        }
        tree = {"op": "call", "target": encoder.encode(target), "args": encoder.encode(list(args)), "kwargs": encoder.encode(dict(kwargs)), "ambient": ambient}
        result, decoder = self.request(tree, encoder)
        originals = tensors_in((list(args), dict(kwargs)))
        for index, value in result.get("changed", []):  # the student's code changed an argument in place: a claim
            if isinstance(index, int) and 0 <= index < len(originals):
                _IN_PLACE_CLAIMS.append((weakref.ref(originals[index]), decoder.decode(value)))
        return decoder.decode(result["value"])

    def reset(self) -> None:
        self.request({"op": "reset"}, Encoder(self.name_object))


# What the worker says its code left in the test's tensor arguments, for this test only. The
# test's own tensors are never rewritten: a submission that zeroes its input in place and returns
# the answer for zeros would otherwise be compared with an expected value computed from zeros.
_IN_PLACE_CLAIMS: list[tuple[weakref.ref, torch.Tensor]] = []


def claimed_in_place(tensor: torch.Tensor) -> torch.Tensor | None:
    """The value the student's code left in `tensor` (an argument the test passed) if it changed it in place."""
    for ref, value in reversed(_IN_PLACE_CLAIMS):
        if ref() is tensor:
            return value
    return None


def _status_text(status: int | None) -> str:
    if status is None:
        return "it ended"
    if os.WIFSIGNALED(status):
        import signal

        number = os.WTERMSIG(status)
        try:
            return f"killed by signal {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"


# ---------------------------------------------------------------- proxies


class RemoteObject:
    """An object that lives in the worker: a model, a class, a function, a generator."""

    __slots__ = ("_connection", "_number", "_type", "_callable", "_text")

    def __init__(self, connection: Connection, number: int, kind: str, is_callable: bool, text: str = "") -> None:
        object.__setattr__(self, "_connection", connection)
        object.__setattr__(self, "_number", number)
        object.__setattr__(self, "_type", kind)  # the student's type, "numpy.ndarray": messages name it
        object.__setattr__(self, "_callable", is_callable)
        object.__setattr__(self, "_text", text)  # how it printed over there

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._connection.getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._connection.setattr(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._connection.delattr(self, name)

    def __call__(self, *args, **kwargs) -> Any:
        return self._connection.call(self, args, kwargs)

    def __iter__(self):
        return self._connection.call(_builtin("iter"), (self,), {})

    def __next__(self):
        return self._connection.call(_builtin("next"), (self,), {})

    def __len__(self) -> int:
        return self._connection.call(_builtin("len"), (self,), {})

    def __getitem__(self, key):
        return self._connection.call(_builtin("getitem"), (self, key), {})

    def __contains__(self, item) -> bool:
        return self._connection.call(_builtin("contains"), (self, item), {})

    def __repr__(self) -> str:  # what the student would see printing it: "dtype('float32')"
        return self._text or f"<{self._type} object>"


def type_name(value: Any) -> str:
    """The type of a value as the student's code made it: "numpy.ndarray", "float", "torch.Tensor"."""
    if isinstance(value, RemoteObject):
        return value._type
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _builtin(name: str) -> Named:
    return Named(f"labs.grader.worker.probes:builtin_{name}")


class RemoteModule:
    """`labs.<name>` of the student, as seen by the tests: always the current test's worker.

    No instance `__dict__` (slots): pytest's monkeypatch reads one to decide what to restore.
    """

    __slots__ = ("_manager", "_name")

    def __init__(self, manager: WorkerManager, name: str) -> None:
        object.__setattr__(self, "_manager", manager)
        object.__setattr__(self, "_name", name)

    def _module(self) -> RemoteObject:
        broken = self._manager.broken.get(self._name)
        if broken is not None:  # it crashed or hung while importing: every later test would wait as long
            raise WorkerLost(broken)
        connection = self._manager.connection()
        started = time.monotonic()
        try:
            return connection.module(self._name)
        except WorkerLost as lost:
            if "time limit" not in str(lost) or time.monotonic() - started > connection.limit / 2:  # the import itself
                self._manager.broken[self._name] = f"importing {self._name}.py in an earlier test: {lost}; not tried again"
            raise

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self._module(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        connection = self._manager.connection(quiet=True)
        if connection is not None:  # after a crash the next worker starts clean: nothing to undo
            connection.setattr(self._module(), name, value)

    def __delattr__(self, name: str) -> None:
        connection = self._manager.connection(quiet=True)
        if connection is not None:
            connection.delattr(self._module(), name)

    def __repr__(self) -> str:
        return f"<labs.{self._name} in the grading worker>"


def run_probe(probe: Callable, *args, **kwargs) -> Any:
    """Run a probe (labs.grader.worker.probes) where the student's code lives.

    With a remote argument, in that worker; otherwise here, on the student's real objects.
    """
    for value in (*args, *kwargs.values()):
        if isinstance(value, RemoteObject):
            return value._connection.call(probe, args, kwargs)
        if isinstance(value, RemoteModule):
            return value._manager.connection().call(probe, args, kwargs)
    return probe(*args, **kwargs)


# ---------------------------------------------------------------- one worker per exercise


class WorkerManager:
    """Starts, resets and ends workers: one per exercise, a fresh one after a crash."""

    def __init__(self, base: Path, repo: Path, forbidden: list[Path], limits: confinement.Limits, timeout: float, log: Path,
                 zygote: Zygote | None = None) -> None:
        self.base, self.repo, self.forbidden, self.limits, self.timeout, self.log = base, repo, forbidden, limits, timeout, log
        self.current: Connection | None = None
        self.exercise: str | None = None
        self.modules: dict[str, RemoteModule] = {}
        self.broken: dict[str, str] = {}  # modules whose import crashed or hung the worker, and how
        self.confinement: dict = {}  # what the last worker applied, in its own words, before student code ran
        # Started now: it imports torch while pytest collects the tests, instead of at the first test.
        # A zygote handed in (labs.check keeps one warm across runs) is used as it is and left running.
        self.keep_zygote = zygote is not None and zygote.alive()
        self.zygote: Zygote | None = zygote if self.keep_zygote else Zygote(base, repo, forbidden, limits, log)

    def module(self, name: str) -> RemoteModule:
        return self.modules.setdefault(name, RemoteModule(self, name))

    def _confinement(self) -> dict:
        """What confinement the new worker applied (confinement.Confinement.as_data()), or {} if it cannot say."""
        try:
            result, decoder = self.current.request({"op": "confinement"}, Encoder(self.current.name_object))
            value = decoder.decode(result)
        except (WorkerLost, ChannelError, Exception):  # noqa: BLE001 - a worker that cannot answer is judged by its tests
            return {}
        return value if isinstance(value, dict) else {}

    def begin_test(self, exercise: str | None) -> None:
        _IN_PLACE_CLAIMS.clear()
        if self.current is not None and (self.current.ended is not None or exercise != self.exercise):
            self.current.end("finished")
            self.current = None
        self.exercise = exercise
        if self.current is None:
            if self.zygote is None or not self.zygote.alive():
                self.zygote = Zygote(self.base, self.repo, self.forbidden, self.limits, self.log)
            try:
                sock, pid, output_fd = self.zygote.spawn()
            except ChannelClosed:  # the zygote was killed: start another once
                self.zygote = Zygote(self.base, self.repo, self.forbidden, self.limits, self.log)
                sock, pid, output_fd = self.zygote.spawn()
            self.current = Connection(self.zygote, sock, pid, output_fd)
            self.current.limit, self.current.deadline = self.timeout, time.monotonic() + self.timeout
            # the worker's own record of its confinement, asked before any student code has run in it
            self.confinement = self._confinement()
        self.current.limit = self.timeout
        self.current.deadline = time.monotonic() + self.timeout
        self.current.reset()

    def connection(self, quiet: bool = False) -> Connection | None:
        if self.current is None or self.current.ended is not None:
            if quiet:
                return None
            raise WorkerLost(f"an earlier call in this test {self.current.ended if self.current else 'found no worker'}")
        return self.current

    def take_output(self) -> str:
        if self.current is None:
            return ""
        time.sleep(0.001)  # let the reader catch the last lines
        return self.current.take_output()

    def close(self) -> None:
        if self.current is not None:
            self.current.end("finished")
            self.current = None
        if self.zygote is not None and not self.keep_zygote:
            self.zygote.shutdown()
        self.zygote = None
