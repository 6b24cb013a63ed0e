"""Small experiments that run where the student's code runs, and return only data.

A graded test that needs autograd through a student's model, or an inside view of a call
(how many torch operations it made), cannot get it from the other side of the grading
channel: gradients live in the worker's autograd graph. These functions do that work in the
worker and hand back tensors and numbers, which the test then compares with what it computes
itself. Tests call them through `tests.helpers.in_worker(probe, ...)`, which runs them here
when the code under test was imported directly (plain pytest, the notebooks).

Everything returned is a claim of the worker's; the tests never take it as the expected value.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from labs.grader.worker import references

# ---------------------------------------------------------------- builtins the proxies need


def builtin_iter(value):
    return iter(value)


def builtin_next(iterator):
    return next(iterator)


def builtin_len(value) -> int:
    return len(value)


def builtin_getitem(value, key):
    return operator.getitem(value, key)


def builtin_contains(value, item) -> bool:
    return item in value


# ---------------------------------------------------------------- autograd


def forward_backward(function, args: tuple, grad_output: Tensor) -> dict:
    """out = function(*args); out.backward(grad_output).

    Returns {"output", "input_grads" (one per tensor argument, None where it got none),
    "parameter_grads" ({name: grad or None}, for an nn.Module)}.
    """
    with torch.enable_grad():
        out = function(*args)
        out.backward(grad_output)
    parameters = dict(function.named_parameters()) if isinstance(function, nn.Module) else {}
    return {
        "output": out.detach(),
        "input_grads": [a.grad for a in args if isinstance(a, Tensor)],
        "parameter_grads": {name: p.grad for name, p in parameters.items()},
    }


def sgd_losses(net: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int) -> list[float]:
    """Plain gradient descent on the cross-entropy of one batch; the loss before each step.

    Written out rather than torch.optim.SGD, whose first use imports torch._dynamo (seconds)."""
    losses = []
    for _ in range(steps):
        net.zero_grad()
        with torch.enable_grad():
            loss = F.cross_entropy(net(x), y)
            loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        losses.append(loss.item())
    return losses


def fit_mse(layer: nn.Module, inputs: Tensor, targets: Tensor, lr: float, steps: int) -> tuple[float, dict]:
    """torch.optim.SGD on the mean squared error; the last loss and the final parameters."""
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.enable_grad():
            loss = F.mse_loss(layer(inputs), targets)
            loss.backward()
        optimizer.step()
    return loss.item(), {name: p.detach() for name, p in layer.named_parameters()}


def cross_tower_gradient(net: nn.Module, x: Tensor, after: str, before: str, seed: int = 0) -> tuple[float, float]:
    """Largest |gradient| of one tower's half of `before`'s input w.r.t. the other tower's half of `after`'s output.

    Returns (tower 0 from tower 1, tower 1 from tower 0); both 0.0 when nothing crosses.
    """
    seen = {}

    def replace(module, inputs, output):
        seen["after"] = output.detach().requires_grad_()
        return seen["after"].clone()  # a non-leaf, so that an in-place ReLU is allowed

    def capture(module, inputs):
        seen["before"] = inputs[0]

    hooks = [getattr(net, after).register_forward_hook(replace), getattr(net, before).register_forward_pre_hook(capture)]
    try:
        with torch.enable_grad():
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    start, end = seen["after"], seen["before"]
    half_in, half_out = start.shape[1] // 2, end.shape[1] // 2
    weights = torch.randn(end.shape, generator=torch.Generator().manual_seed(seed))  # no accidental cancellations
    largest = []
    for tower_out, other_in in ((slice(0, half_out), slice(half_in, None)), (slice(half_out, None), slice(0, half_in))):
        (grad,) = torch.autograd.grad((end * weights)[:, tower_out].sum(), start, retain_graph=True)
        largest.append(grad[:, other_in].abs().max().item())
    return largest[0], largest[1]


# ---------------------------------------------------------------- looking inside


class _CountTorchCalls(torch.overrides.TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside `with`."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_torch_calls(function, *args, **kwargs) -> int:
    """How many torch operations function(*args, **kwargs) makes: a vectorized function makes
    as many on a large input as on a small one; a Python loop over positions makes more."""
    with _CountTorchCalls() as counter:
        function(*args, **kwargs)
    return counter.calls


def count_modules(net: nn.Module, kind: type) -> int:
    """How many of net's modules are instances of `kind`."""
    return sum(isinstance(module, kind) for module in net.modules())


def reference_calls(module=None) -> dict:
    """How often each stand-in of references.py ran since the last reset_reference_calls()."""
    return dict(references.CALLS)


def reset_reference_calls(module=None) -> None:
    for name in references.CALLS:
        references.CALLS[name] = 0


# ---------------------------------------------------------------- the sandbox, tried from inside


def _attempt(action) -> str:
    """ "refused (<error>)" when `action()` raises, else "ALLOWED" and what it returned."""
    try:
        result = action()
    except BaseException as error:  # noqa: BLE001 - every refusal is an answer
        return f"refused ({type(error).__name__}: {error})"[:300]
    return f"ALLOWED ({result})"[:300]


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _checked(result: int, what: str) -> int:
    import ctypes
    import os

    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def _read(path: str) -> str:
    with open(path, "rb") as file:
        return f"read {len(file.read(4096))} bytes"


def _write_outside(path: str) -> str:
    with open(path, "wb") as file:
        file.write(b"labs sandbox probe")
    import os

    os.unlink(path)
    return "wrote and removed it"


def _send(family: int, kind: int, protocol: int, address, datagram: bool) -> str:
    import socket

    with socket.socket(family, kind, protocol) as sock:
        sock.settimeout(2)
        if datagram:
            sock.sendto(b"labs sandbox probe", address)
            return "sent a datagram"
        sock.connect(address)
        sock.sendall(b"labs sandbox probe")
        return "connected and sent"


def _new_socket(family: int, kind: int) -> str:
    import socket

    socket.socket(family, kind).close()  # created only: never connected anywhere
    return "created one"


def _sysv(name: str) -> str:
    libc = _libc()
    create, remove = {"shm": (lambda: libc.shmget(0, 4096, 0o1600), lambda i: libc.shmctl(i, 0, None)),  # IPC_PRIVATE, IPC_CREAT|0600; IPC_RMID
                      "msg": (lambda: libc.msgget(0, 0o1600), lambda i: libc.msgctl(i, 0, None)),
                      "sem": (lambda: libc.semget(0, 1, 0o1600), lambda i: libc.semctl(i, 0, 0))}[name]
    number = _checked(create(), f"{name}get")
    remove(number)
    return f"created segment {number} (and removed it)"


def _posix_shm() -> str:
    from multiprocessing import shared_memory

    memory = shared_memory.SharedMemory(create=True, size=4096)
    memory.close()
    memory.unlink()
    return f"created /dev/shm{memory._name} (and removed it)"


def _message_queue() -> str:
    import ctypes
    import os

    libc = _libc()
    if not hasattr(libc, "mq_open"):
        libc = ctypes.CDLL("librt.so.1", use_errno=True)
    libc.mq_open.restype = ctypes.c_int
    name = f"/labs-probe-{os.getpid()}".encode()
    queue = _checked(libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None), "mq_open")
    libc.mq_close(queue)
    libc.mq_unlink(name)
    return "opened a message queue (and removed it)"


def _run_program(path: str) -> str:
    import subprocess

    return f"exit code {subprocess.run([path], capture_output=True, timeout=10).returncode}"


def sandbox_probe(targets: dict) -> dict:
    """Try from inside the worker what its sandbox should refuse; report what it actually got.

    `targets` (from the sandbox check on the trusted side, all optional): "read" (files), "list"
    (folders), "write" (paths outside the scratch folder), "udp_port" and "tcp_port" (listening on
    127.0.0.1), "unix_socket" (a listening socket's path), "abstract_socket" (a name), "signal"
    (pids, sent signal 0: it asks and harms nothing), "run" (a program). Returns {"tries": {what:
    "refused (...)" | "ALLOWED (...)"}, "status": /proc/self/status's uid, capability, no_new_privs
    and seccomp lines, "namespaces": {name: inode of /proc/self/ns/<name>}, "interfaces" (network), "cwd"}.
    """
    import os
    import socket

    tries = {}
    for path in targets.get("read", []):
        tries[f"read {path}"] = _attempt(lambda: _read(path))
    for path in targets.get("list", []):
        tries[f"list {path}"] = _attempt(lambda: f"{len(os.listdir(path))} entries")
    for path in targets.get("write", []):
        tries[f"write {path}"] = _attempt(lambda: _write_outside(path))
    mptcp = getattr(socket, "IPPROTO_MPTCP", 262)
    if "udp_port" in targets:
        port = int(targets["udp_port"])
        tries["UDP to 127.0.0.1"] = _attempt(lambda: _send(socket.AF_INET, socket.SOCK_DGRAM, 0, ("127.0.0.1", port), True))
        tries["UDP to ::1"] = _attempt(lambda: _send(socket.AF_INET6, socket.SOCK_DGRAM, 0, ("::1", port), True))
    if "tcp_port" in targets:
        port = int(targets["tcp_port"])
        tries["TCP to 127.0.0.1"] = _attempt(lambda: _send(socket.AF_INET, socket.SOCK_STREAM, 0, ("127.0.0.1", port), False))
        tries["MPTCP to 127.0.0.1"] = _attempt(lambda: _send(socket.AF_INET, socket.SOCK_STREAM, mptcp, ("127.0.0.1", port), False))
    if "unix_socket" in targets:
        path = targets["unix_socket"]
        tries[f"unix socket {path}"] = _attempt(lambda: _send(socket.AF_UNIX, socket.SOCK_STREAM, 0, path, False))
    if "abstract_socket" in targets:
        name = "\0" + targets["abstract_socket"]
        tries["abstract unix socket"] = _attempt(lambda: _send(socket.AF_UNIX, socket.SOCK_STREAM, 0, name, False))
    for label, family, kind in (("AF_NETLINK", 16, socket.SOCK_RAW), ("AF_PACKET", 17, socket.SOCK_RAW), ("AF_VSOCK", 40, socket.SOCK_STREAM)):
        tries[f"new {label} socket"] = _attempt(lambda: _new_socket(family, kind))
    for name in ("shm", "msg", "sem"):
        tries[f"SysV {name}get"] = _attempt(lambda: _sysv(name))
    tries["POSIX shm_open"] = _attempt(_posix_shm)
    tries["POSIX mq_open"] = _attempt(_message_queue)
    for pid in targets.get("signal", []):
        tries[f"signal {pid}"] = _attempt(lambda: os.kill(int(pid), 0) or "it exists")
    for path in targets.get("run", []):
        tries[f"run {path}"] = _attempt(lambda: _run_program(path))
    wanted = ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
    status = {}
    for line in open("/proc/self/status").read().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            status[key] = value.strip()
    namespaces = {}
    for name in ("ipc", "net", "mnt", "user", "pid", "uts", "cgroup"):
        try:
            namespaces[name] = os.stat(f"/proc/self/ns/{name}").st_ino
        except OSError:
            pass
    try:  # the network interfaces it sees: only "lo" in a network namespace of its own
        interfaces = [line.split(":")[0].strip() for line in open("/proc/self/net/dev").read().splitlines()[2:]]
    except OSError as error:
        interfaces = [f"unreadable ({error})"]
    return {"tries": tries, "status": status, "namespaces": namespaces, "interfaces": interfaces, "cwd": os.getcwd()}


def fill_scratch(total_bytes: int, file_bytes: int = 48 * 2**20, keep: bool = False) -> dict:
    """Write `total_bytes` into the worker's scratch folder (its working folder), `file_bytes` a file.

    Returns {"written": bytes written, "error": what stopped it, or ""}. The files are removed
    afterwards unless `keep` (to see that they are removed when the worker ends).
    """
    import os

    chunk = b"\0" * 2**20
    written, error, paths = 0, "", []
    try:
        while written < total_bytes:
            path = f"labs-fill-{len(paths)}.bin"
            paths.append(path)
            with open(path, "wb") as file:
                for _ in range(max(1, min(file_bytes, total_bytes - written) // len(chunk))):
                    file.write(chunk)
                    written += len(chunk)
                file.flush()
                os.fsync(file.fileno())
    except OSError as failure:
        error = f"{type(failure).__name__}: {failure}"
    if not keep:
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
    return {"written": written, "error": error}


def sysv_shm(key: int, create: bool) -> str:
    """Create (or only look up) the SysV shared memory segment `key`: "created", "found", or the error.

    A created segment is left in place: whether another worker sees it is the point.
    """
    import ctypes
    import os

    libc = _libc()
    number = libc.shmget(ctypes.c_int(key), 4096, 0o1600 if create else 0)  # IPC_CREAT|0600, or look up only
    if number < 0:
        return f"refused ({os.strerror(ctypes.get_errno())})"
    return "created" if create else "found"
