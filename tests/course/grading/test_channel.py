"""The channel between the grader and a worker (labs/grader/channel.py), in milliseconds: what
crosses, and every malformed message refused before anything is built from it."""

from __future__ import annotations

import json
import socket
import struct

import pytest
import torch

from labs.grader import channel
from labs.grader.channel import ChannelError, Decoder, Encoder, Named

_LENGTH = struct.Struct("<Q")


def _no_names(value):
    raise AssertionError(f"unexpected object {value!r}")


def _round_trip(value):
    ours, theirs = socket.socketpair()
    try:
        encoder = Encoder(_no_names)
        tree = encoder.encode(value)
        channel.send_message(ours, tree, encoder.tensors)
        received, tensors = channel.receive_message(theirs)
        return Decoder(tensors, lambda tree: pytest.fail(f"resolved {tree}")).decode(received)
    finally:
        ours.close()
        theirs.close()


def _send_raw(header: dict, blobs: bytes = b"", declared: int | None = None) -> tuple:
    """Hand-made bytes on the wire (as a hostile worker would write them); what the reader makes of them."""
    ours, theirs = socket.socketpair()
    try:
        encoded = json.dumps(header).encode()
        payload = _LENGTH.pack(len(encoded)) + encoded + blobs
        ours.sendall(_LENGTH.pack(len(payload) if declared is None else declared) + payload)
        ours.shutdown(socket.SHUT_WR)
        return channel.receive_message(theirs)
    finally:
        ours.close()
        theirs.close()


def _header(tensors, storages, tree=None) -> dict:
    return {"tree": tree if tree is not None else {"tensor": 0}, "tensors": tensors, "storages": storages}


def test_data_crosses_whole_views_keep_their_strides_and_share_storage():
    base = torch.arange(12.0).reshape(3, 4)
    value = {"t": base.t(), "row": base[1], "n": 3, "big": 2**60, "inf": float("inf"), "s": "x", "none": None,
             "tuple": (1, 2.5), "dtype": torch.float64, "size": torch.Size([2, 3])}
    back = _round_trip(value)
    assert torch.equal(back["t"], base.t()) and back["t"].stride() == (1, 4)
    assert back["row"].untyped_storage().data_ptr() == back["t"].untyped_storage().data_ptr()
    assert back["big"] == 2**60 and back["inf"] == float("inf") and back["tuple"] == (1, 2.5)
    assert back["dtype"] is torch.float64 and back["size"] == torch.Size([2, 3])


def test_a_frame_over_the_size_limit_is_refused_before_it_is_read():
    with pytest.raises(ChannelError, match="over the limit"):
        _send_raw(_header([], []), declared=channel.MAX_MESSAGE + 1)


def test_a_header_longer_than_its_payload_is_refused():
    ours, theirs = socket.socketpair()
    try:
        payload = _LENGTH.pack(10_000) + b"{}"
        ours.sendall(_LENGTH.pack(len(payload)) + payload)
        with pytest.raises(ChannelError, match="header is longer"):
            channel.receive_message(theirs)
    finally:
        ours.close()
        theirs.close()


def test_storages_that_do_not_fit_in_the_message_are_refused():
    with pytest.raises(ChannelError, match="storages do not fit"):
        _send_raw(_header([], [1_000]), b"1234")


@pytest.mark.parametrize("field, value", [("stride", [-1]), ("shape", [-4]), ("offset", -1), ("stride", [1.5])])
def test_negative_or_fractional_shapes_strides_and_offsets_are_refused(field, value):
    info = {"storage": 0, "dtype": "float32", "offset": 0, "shape": [1], "stride": [1], field: value}
    with pytest.raises(ChannelError, match="non-negative integers"):
        _send_raw(_header([info], [4]), b"\0" * 4)


def test_a_view_that_reads_past_its_storage_is_refused():
    info = {"storage": 0, "dtype": "float32", "offset": 0, "shape": [1000], "stride": [1]}
    with pytest.raises(ChannelError, match="malformed"):
        _send_raw(_header([info], [4]), b"\0" * 4)


@pytest.mark.parametrize("dtype", ["float1024", "Tensor", "__class__", "nn"])
def test_unknown_dtypes_are_refused(dtype):
    info = {"storage": 0, "dtype": dtype, "offset": 0, "shape": [1], "stride": [1]}
    with pytest.raises(ChannelError, match="unknown dtype"):
        _send_raw(_header([info], [4]), b"\0" * 4)


@pytest.mark.parametrize("index", [1, -1, "0", 2**70])
def test_a_tree_that_names_a_tensor_the_message_does_not_hold_is_refused(index):
    tree, tensors = _send_raw(_header([], [], tree={"tensor": index}))
    with pytest.raises(ChannelError, match="does not hold"):
        Decoder(tensors, _no_names).decode(tree)


@pytest.mark.parametrize("tree", [{}, [1, 2], {"bogus": 1}])
def test_values_that_are_not_part_of_the_format_are_refused(tree):
    def refuse(tree):
        raise ChannelError("unknown value")

    with pytest.raises(ChannelError):
        Decoder([], refuse).decode(tree)


def test_only_the_listed_names_cross_and_a_listed_name_resolves_only_there():
    for name in ("labs.grader.worker.references:CALLS", "os:system", "labs.grader.trusted.runner:grade", "builtins:eval"):
        with pytest.raises(ChannelError, match="may cross"):
            channel.resolve_name(name)
        with pytest.raises(ValueError, match="may not cross"):
            Named(name)
    from labs.grader.worker import probes, references

    assert channel.resolve_name("labs.grader.worker.probes:builtin_len") is probes.builtin_len
    assert channel.crossing_name(probes.forward_backward) == "labs.grader.worker.probes:forward_backward"
    assert channel.crossing_name(references.TorchConv2dFunction) == "labs.grader.worker.references:TorchConv2dFunction"
    assert channel.crossing_name(torch.nn.functional.conv2d) is None and channel.crossing_name(print) is None


def test_an_exception_crosses_as_data_with_its_kind_and_the_students_line():
    def student_code():
        raise KeyError("no such key")

    student_code.__code__ = student_code.__code__.replace(co_filename="/tmp/labs-code-x/code/labs/mlp.py")
    try:
        student_code()
    except KeyError as error:
        data = channel.exception_to_data(error)
    assert data["type"] == "KeyError" and data["builtin"] == "KeyError" and data["where"]["file"] == "labs/mlp.py"
    rebuilt = channel.exception_from_data(json.loads(json.dumps(data)))
    assert isinstance(rebuilt, KeyError) and rebuilt.where.startswith("labs/mlp.py:")


def test_a_rebuilt_exception_is_never_a_disguised_stop_iteration_or_a_base_exception():
    disguised = channel.exception_from_data({"type": "ShapeError", "builtin": "StopIteration", "message": "m"})
    assert not isinstance(disguised, StopIteration) and isinstance(disguised, channel.RemoteError)
    exiting = channel.exception_from_data({"type": "SystemExit", "builtin": "SystemExit"})
    assert isinstance(exiting, Exception) and not isinstance(exiting, SystemExit)
    named = channel.exception_from_data({"type": "Shape<Error>!", "builtin": "ValueError", "message": "x" * 10**6})
    assert isinstance(named, ValueError) and type(named).__name__ == "ShapeError" and len(str(named)) == channel.MAX_TEXT
    assert isinstance(channel.exception_from_data("not a dict"), channel.RemoteError)
    hostile_where = channel.exception_from_data({"type": "E", "builtin": "ValueError", "where": {"file": "x", "line": "9e99"}})
    assert hostile_where.where.startswith("x:0:")
