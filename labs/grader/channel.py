"""The one narrow channel between the grader and the worker that runs a student's code.

Only data crosses it: tensors, numbers, strings, None, and lists, tuples and dicts of these.
A message is a JSON header (the value as a small tree, and each tensor's dtype, shape, strides
and offset into a storage) followed by the raw bytes of the storages. Reading one parses JSON
and copies bytes: there is no pickle anywhere, so a message cannot make the reader run code.

Everything else travels as a name, never as code:
    {"ref": n}        an object that lives in the worker (a model, a class, a generator), n in its table
    {"callback": n}   a function of the grader's (a reference, a spy, a hook) that the worker may call back
    {"named": "labs.grader.worker.references:TorchConv2dFunction"}
                      one of `CROSSING_NAMES`, sent by the grader only: the worker's probes and the
                      torch stand-ins meant for it, which the worker imports by name. The worker
                      never sends a name: what it returns that is not data is a {"ref"}, so the
                      grader never runs its own copy of anything on the student's behalf.

Exceptions cross as data too (`exception_to_data`, `exception_from_data`): a type name, the
builtin it derives from, a clipped message and, for the student's own code, where it was raised.

Framing: an 8-byte little-endian length, then the payload (the header's length, the header,
the storages). A message longer than `MAX_MESSAGE` is refused, so a worker cannot make the
grader read gigabytes. Views keep their strides and share storage, as with torch.save.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any, Callable

import torch

MAX_MESSAGE = 512 * 2**20  # bytes
MAX_TEXT = 20_000  # characters of a string that the grader keeps from the worker
_HEADER = struct.Struct("<Q")


class ChannelClosed(Exception):
    """The other side hung up (it ended, crashed or was killed)."""


class ChannelError(Exception):
    """The other side sent something that is not a well-formed message."""


# ---------------------------------------------------------------- framing


def send_message(sock: socket.socket, tree: Any, tensors: list[torch.Tensor]) -> None:
    storages: dict[tuple[int, int], int] = {}
    blobs: list[bytes] = []
    described = []
    for tensor in tensors:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in storages:
            storages[key] = len(blobs)
            blobs.append(torch.empty(0, dtype=torch.uint8).set_(storage).numpy().tobytes() if storage.nbytes() else b"")
        described.append({
            "storage": storages[key],
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "offset": tensor.storage_offset(),
            "shape": list(tensor.shape),
            "stride": list(tensor.stride()),
        })
    header = json.dumps({"tree": tree, "tensors": described, "storages": [len(blob) for blob in blobs]}).encode()
    payload_length = _HEADER.size + len(header) + sum(len(blob) for blob in blobs)
    sock.sendall(b"".join([_HEADER.pack(payload_length), _HEADER.pack(len(header)), header, *blobs]))


def receive_message(sock: socket.socket) -> tuple[Any, list[torch.Tensor]]:
    (length,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    if length > MAX_MESSAGE:
        raise ChannelError(f"a message of {length:,} bytes is over the limit of {MAX_MESSAGE:,}")
    payload = _receive_exactly(sock, length)
    try:
        return _parse(payload)
    except ChannelError:
        raise
    except Exception as error:  # anything malformed is the sender's fault, never ours to run
        raise ChannelError(f"a malformed message ({type(error).__name__}: {str(error)[:200]})") from None


def _parse(payload: bytearray) -> tuple[Any, list[torch.Tensor]]:
    (header_length,) = _HEADER.unpack_from(payload, 0)
    start = _HEADER.size + header_length
    if start > len(payload):
        raise ChannelError("a message's header is longer than the message")
    header = json.loads(bytes(payload[_HEADER.size : start]))
    storages = []
    for size in header["storages"]:
        if not isinstance(size, int) or size < 0 or start + size > len(payload):
            raise ChannelError("a message's storages do not fit in it")
        data = torch.frombuffer(payload, dtype=torch.uint8, offset=start, count=size) if size else torch.empty(0, dtype=torch.uint8)
        storages.append(data.untyped_storage())
        start += size
    tensors = []
    for info in header["tensors"]:
        shape, stride, offset = info["shape"], info["stride"], info["offset"]
        if not all(isinstance(n, int) and n >= 0 for n in [*shape, *stride, offset]) or len(shape) != len(stride):
            raise ChannelError("a tensor's shape, strides and offset must be non-negative integers")
        # set_ checks that the view fits in its storage (an error, never a read out of bounds)
        tensors.append(torch.empty(0, dtype=_dtype(info["dtype"])).set_(storages[info["storage"]], offset, shape, stride))
    return header["tree"], tensors


def _receive_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, received = memoryview(buffer), 0
    while received < size:
        count = sock.recv_into(view[received:], min(size - received, 2**22))
        if not count:
            raise ChannelClosed("the other side closed the channel")
        received += count
    return buffer


# ---------------------------------------------------------------- values


class Encoder:
    """Turns a value into a JSON tree plus tensors; `name_object(obj)` names what is not data."""

    def __init__(self, name_object: Callable[[Any], dict], plain: bool = False) -> None:
        self.name_object = name_object
        self.plain = plain  # send tensors as plain data, without requires_grad (a callback's result)
        self.tensors: list[torch.Tensor] = []

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value if abs(value) < 2**53 else {"bigint": str(value)}
        if isinstance(value, float):
            return value if math.isfinite(value) else {"float": repr(value)}
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, torch.Size):
            return {"size": list(value)}
        if isinstance(value, torch.dtype):
            return {"dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"device": str(value)}
        if isinstance(value, torch.Generator):  # its state travels; the copy draws what the original would
            self.tensors.append(value.get_state())
            return {"generator": len(self.tensors) - 1}
        if isinstance(value, slice):
            return {"slice": [self.encode(value.start), self.encode(value.stop), self.encode(value.step)]}
        if value is Ellipsis:
            return {"ellipsis": True}
        if type(value) in (list, tuple):
            return {type(value).__name__: [self.encode(item) for item in value]}
        if type(value) is dict or type(value).__name__ == "OrderedDict":
            return {"dict": [[self.encode(key), self.encode(item)] for key, item in value.items()]}
        return self.name_object(value)

    def _tensor(self, tensor: torch.Tensor) -> dict:
        info = {
            "requires_grad": tensor.requires_grad and not self.plain,
            "leaf": tensor.is_leaf,
            "parameter": isinstance(tensor, torch.nn.Parameter),
        }
        if tensor.device.type == "meta":  # shapes without memory: nothing to copy
            return {"meta": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch."), **info}
        self.tensors.append(tensor.detach().cpu())
        return {"tensor": len(self.tensors) - 1, "device": str(tensor.device), **info}


class Decoder:
    """Rebuilds what an Encoder wrote; `resolve(tree)` turns a name into an object."""

    def __init__(self, tensors: list[torch.Tensor], resolve: Callable[[dict], Any]) -> None:
        self.tensors = tensors
        self.resolve = resolve

    def decode(self, tree: Any) -> Any:
        if tree is None or isinstance(tree, (bool, int, float)):
            return tree
        if isinstance(tree, str):
            return tree
        if not isinstance(tree, dict) or len(tree) == 0:
            raise ChannelError(f"unexpected value in a message: {str(tree)[:80]}")
        if "tensor" in tree or "meta" in tree:
            return self._tensor(tree)
        if "generator" in tree:
            return torch.Generator().set_state(self._tensor({"tensor": tree["generator"]}))
        if "bigint" in tree:
            return int(tree["bigint"])
        if "float" in tree:
            return float(tree["float"])
        if "size" in tree:
            return torch.Size(int(n) for n in tree["size"])
        if "dtype" in tree:
            return _dtype(tree["dtype"])
        if "device" in tree:
            return torch.device(tree["device"])
        if "slice" in tree:
            return slice(*(self.decode(part) for part in tree["slice"]))
        if "ellipsis" in tree:
            return Ellipsis
        if "list" in tree:
            return [self.decode(item) for item in tree["list"]]
        if "tuple" in tree:
            return tuple(self.decode(item) for item in tree["tuple"])
        if "dict" in tree:
            return {_hashable(self.decode(key)): self.decode(item) for key, item in tree["dict"]}
        return self.resolve(tree)

    def _tensor(self, tree: dict) -> torch.Tensor:
        if "meta" in tree:
            tensor = torch.empty([int(n) for n in tree["meta"]], dtype=_dtype(tree["dtype"]), device="meta")
        else:
            index = tree["tensor"]
            if not isinstance(index, int) or not 0 <= index < len(self.tensors):
                raise ChannelError(f"a message names tensor {index}, which it does not hold")
            tensor = self.tensors[index]
        if tree.get("parameter"):
            return torch.nn.Parameter(tensor, requires_grad=bool(tree.get("requires_grad")))
        if tree.get("requires_grad"):
            tensor = tensor.requires_grad_()
            if not tree.get("leaf", True):  # the worker's tensor came out of a computation
                tensor = tensor.view_as(tensor)  # a non-leaf, as it was over there
        return tensor


def _dtype(name: Any) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ChannelError(f"unknown dtype {str(name)[:40]!r}")
    return dtype


def _hashable(key: Any) -> Any:
    try:
        hash(key)
    except TypeError:
        raise ChannelError("a dict key in a message is not hashable") from None
    return key


# The names that may cross the channel (from the grader to the worker): the probes, the builtins
# that proxies need, and the torch stand-ins of other exercises. Nothing else is ever resolved by name.
_PROBES = "labs.grader.worker.probes"
_REFERENCES = "labs.grader.worker.references"
CROSSING_NAMES = frozenset(
    [f"{_PROBES}:{name}" for name in (
        "builtin_iter", "builtin_next", "builtin_len", "builtin_getitem", "builtin_contains",
        "forward_backward", "sgd_losses", "fit_mse", "cross_tower_gradient", "count_torch_calls",
        "count_modules", "reference_calls", "reset_reference_calls",
        "sandbox_probe", "fill_scratch", "sysv_shm",  # the sandbox check (trusted/sandbox_check.py)
    )]
    + [f"{_REFERENCES}:{name}" for name in ("TorchConv2dFunction", "conv2d", "conv2d_backward")]
)


class Named:
    """A name of `CROSSING_NAMES` that the grader sends without importing what it names."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if name not in CROSSING_NAMES:
            raise ValueError(f"{name!r} may not cross the grading channel")
        self.name = name


def crossing_name(value: Any) -> str | None:
    """'module:name' when `value` is (or names) one of CROSSING_NAMES, else None."""
    if isinstance(value, Named):
        return value.name
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if isinstance(module, str) and isinstance(name, str) and f"{module}:{name}" in CROSSING_NAMES:
        return f"{module}:{name}"
    return None


def resolve_name(name: Any) -> Any:
    """The object a crossing name stands for, imported here (the worker's side)."""
    if not isinstance(name, str) or name not in CROSSING_NAMES:
        raise ChannelError(f"not a name that may cross the channel: {str(name)[:80]!r}")
    import importlib

    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


# ---------------------------------------------------------------- exceptions


class RemoteError(Exception):
    """Base of exceptions rebuilt from the other side whose type is not a Python builtin."""


STUDENT_FILES = ("basics.py", "mlp.py", "conv.py", "models.py")  # the exercise modules, where a student's line is


def exception_to_data(error: BaseException) -> dict:
    """An exception as data: its type, the builtin type it derives from, its message, and where
    in the student's exercise modules it was raised (the innermost such frame), if it was."""
    import builtins
    import linecache
    import traceback

    builtin = next((k.__name__ for k in type(error).__mro__ if getattr(builtins, k.__name__, None) is k), "Exception")
    where = None
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = frame.filename.replace("\\", "/")
        if path.rsplit("/", 1)[-1] in STUDENT_FILES and "/labs/" in path:
            source = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
            where = {"file": "labs/" + path.rsplit("/", 1)[-1], "line": frame.lineno, "source": source[:300]}
            break
    return {"type": type(error).__name__[:100], "builtin": builtin, "message": _text(error)[:MAX_TEXT], "where": where}


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # noqa: BLE001 - a __str__ that raises is the student's; say so instead
        return f"<{type(error).__name__} whose message could not be read>"


def exception_from_data(error: Any) -> BaseException:
    """The other side's exception as one of ours: a builtin type, or a subclass of it named as it was.

    Never StopIteration under another name (it would end a generator silently), never a
    BaseException that is not an Exception (KeyboardInterrupt, SystemExit). A student's line,
    when known, is kept in `where` ("labs/mlp.py:115: e = torch.exp(...)").
    """
    import builtins

    if not isinstance(error, dict):
        return RemoteError("the other side sent a malformed error")
    name, builtin = str(error.get("type", "Exception")), str(error.get("builtin", "Exception"))
    message = str(error.get("message", ""))[:MAX_TEXT]
    base = getattr(builtins, builtin, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is StopIteration and name != "StopIteration":
        base = Exception
    if name == base.__name__:
        rebuilt = base(message)
    else:
        safe = "".join(c for c in name if c.isalnum() or c == "_")[:60] or "Error"
        rebuilt = type(safe, (RemoteError, base), {"__module__": "student"})(message)
    where = error.get("where")
    if isinstance(where, dict):
        line = where.get("line") if isinstance(where.get("line"), int) else 0
        rebuilt.where = f"{str(where.get('file'))[:100]}:{line}: {str(where.get('source', ''))[:300]}"
    return rebuilt


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a call's arguments (nested lists, tuples and dicts), in a fixed order; meta tensors left out.

    Both sides number the arguments of a call by this order: the worker reports which of them
    the student's code changed in place, and the grader writes those back into its own.
    """
    if isinstance(value, torch.Tensor):
        return [value] if value.device.type != "meta" else []
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    return []
