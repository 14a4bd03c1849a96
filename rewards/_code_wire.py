"""Plain data across the sandbox boundary: length-prefixed JSON frames; a codec that carries values, never behaviour.

Both sides of a code job use it (see `rewards/_code_runner.py`): the trusted test process and the program's process
exchange candidate calls and their results through a socket. The test process decodes what the program's process
sends, so decoding builds only these types: None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset, and references (a number naming an object that stays in the program's process; the test side wraps it in
an inert proxy). No pickle, no marshal, no class of the program: an object whose `__eq__` says True to everything
arrives as a reference, and a reference compares equal to nothing.

Subclasses of the plain types cross as their base type (a Counter as a dict, a namedtuple as a tuple, an IntEnum as an
int): what crosses is the value.

>>> value = {"a": (1, 2.5, None), 3: {frozenset({b"x"}), -1j}, "big": 2**20000}
>>> decode(loads(dumps(encode(value)))) == value
True
>>> encode([1, (True, "s")])
[1, {'t': [True, 's']}]
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Callable

MAX_FRAME = 64 << 20  # bytes in one message; a larger result is refused as unserializable
_HEADER = struct.Struct(">I")
_BIG = 1 << 4000  # JSON ints beyond ~4300 digits hit int's str-conversion limit: send those as hex


class WireError(ValueError):
    """A frame that is not plain data in our encoding (too large, malformed, or an unknown tag)."""


class Unserializable(TypeError):
    """A value that cannot cross as plain data (a function, a generator, an object of a program-defined class...)."""


def _no_refs(value: object) -> object:
    raise Unserializable(f"a value of type {type(value).__name__} cannot cross as plain data")


def encode(value: object, ref: Callable[[object], int] = _no_refs) -> object:
    """`value` as JSON-ready data; `ref(obj)` names any other object (the default refuses it: `Unserializable`)."""
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return value if -_BIG < value < _BIG else {"i": hex(value)}
    if kind is list:
        return [encode(item, ref) for item in value]
    if kind is tuple:
        return {"t": [encode(item, ref) for item in value]}
    if kind is dict:
        return {"d": [[encode(k, ref), encode(v, ref)] for k, v in value.items()]}
    if kind is set:
        return {"s": [encode(item, ref) for item in value]}
    if kind is frozenset:
        return {"f": [encode(item, ref) for item in value]}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode("ascii")}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    # Subclasses cross as the value of their plain base type (bool cannot be subclassed).
    for base in (int, float, complex, str, bytes, list, tuple, dict, set, frozenset):
        if isinstance(value, base):
            return encode(base(value), ref)
    if isinstance(value, (bytearray, memoryview)):
        return encode(bytes(value), ref)
    return {"r": ref(value)}


def decode(data: object, ref: Callable[[int], object] = lambda number: _refuse_ref(number)) -> object:
    """The value `encode` described; `ref(number)` turns a reference into an object. Raises `WireError` on anything
    else, so a hostile sender gets a failure, never an object of its choosing."""
    try:
        return _decode(data, ref)
    except (TypeError, ValueError, RecursionError, MemoryError) as exc:
        if isinstance(exc, (WireError, Unserializable)):
            raise
        raise WireError(f"not plain data: {type(exc).__name__}: {str(exc)[:200]}") from None


def _refuse_ref(number: int) -> object:
    raise WireError("a reference where only plain data may appear")


def _decode(data: object, ref: Callable[[int], object]) -> object:
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is float or kind is str:
        return data
    if kind is list:
        return [_decode(item, ref) for item in data]
    if kind is not dict or len(data) != 1:
        raise WireError(f"not plain data: {kind.__name__}")
    ((tag, body),) = data.items()
    if tag == "r" and type(body) is int:
        return ref(body)
    if tag == "i" and type(body) is str:
        return int(body, 16)
    if tag == "b" and type(body) is str:
        return base64.b64decode(body.encode("ascii"), validate=True)
    if type(body) is not list:
        raise WireError(f"not plain data: tag {tag!r}")
    if tag == "t":
        return tuple(_decode(item, ref) for item in body)
    if tag == "s":
        return {_decode(item, ref) for item in body}
    if tag == "f":
        return frozenset(_decode(item, ref) for item in body)
    if tag == "d":
        if not all(type(pair) is list and len(pair) == 2 for pair in body):
            raise WireError("not plain data: malformed dict")
        return {_decode(k, ref): _decode(v, ref) for k, v in body}
    if tag == "c" and len(body) == 2 and all(type(part) in (int, float) for part in body):
        return complex(body[0], body[1])
    raise WireError(f"not plain data: tag {tag!r}")


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def dumps(message: object) -> bytes:
    """One message (JSON-ready data) as bytes; NaN and infinities are kept (Python's JSON extension)."""
    return _ENCODER.encode(message).encode("ascii")


def loads(payload: bytes) -> object:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"malformed frame: {str(exc)[:200]}") from None


def send(fd: int, message: object) -> None:
    """Write one frame (4-byte length, then JSON) to `fd`."""
    payload = dumps(message)
    if len(payload) > MAX_FRAME:
        raise Unserializable(f"a message of {len(payload)} bytes is over the {MAX_FRAME}-byte limit")
    _write_all(fd, _HEADER.pack(len(payload)) + payload)


def recv(fd: int) -> object:
    """Read one frame from `fd`; EOFError when the other side closed (or died) first."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    return loads(_read_exactly(fd, size))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
