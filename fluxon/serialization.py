"""Payload and result (de)serialization, with a restricted decoder for untrusted bytes.

Requests travel as pickles (the seed's API sends any Python object), but a pickle
is a program: unpickling network bytes is remote code execution. So:

- the broker never unpickles anything;
- a worker decodes request payloads with :func:`loads_restricted`, an unpickler
  whose ``find_class`` resolves only plain data types (``ALLOWED_GLOBALS``) and
  refuses every other global before any of the payload's code can run; it also
  refuses the memory bombs a data-only pickle can hold (a huge memo index, ``bytes(n)``)
  and takes pickle protocol 3 and later only (protocol 2 names Python 2 modules);
- payloads from client keys the deployment marks as trusted are decoded with
  :func:`loads_trusted` (full cloudpickle), and so are replies on the client,
  which come from the broker the client authenticated.

Example::

    >>> loads_restricted(dumps({"when": datetime.date(2024, 1, 2)}))
    {'when': datetime.date(2024, 1, 2)}
    >>> loads_restricted(pickle.dumps(os.system))
    Traceback (most recent call last):
    fluxon.errors.BadRequest: payload refers to a forbidden global: posix.system
"""

from __future__ import annotations

import io
import pickle
import pickletools
import threading
from typing import Any

import cloudpickle

from fluxon.errors import BadRequest, SerializationError

__all__ = ["ALLOWED_GLOBALS", "dumps", "loads_restricted", "loads_trusted"]

#: (module, qualified name) pairs a restricted payload may name. Builtin containers
#: and scalars (dict, list, str, int, float, bool, None, bytes) need no global at all
#: in pickle protocol 2+; the entries below are what their reconstruction refers to.
#: (``uuid.SafeUUID`` is deliberately absent: a UUID pickles its ``is_safe`` as a plain
#: value, and an enum member is a global singleton a payload could mutate with BUILD.)
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "str"),
    ("builtins", "bytes"), ("builtins", "bytearray"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "complex"), ("builtins", "bool"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("uuid", "UUID"),
})


def _no_size_argument(cls: type) -> Any:
    """``cls`` callable as pickle's REDUCE needs it, minus ``cls(n)``, which allocates n bytes."""
    def construct(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise BadRequest(f"payload calls {cls.__name__}() with a size, which is not allowed")
        return cls(*args)
    construct.__qualname__ = construct.__name__ = cls.__name__
    return construct


#: Allowed globals that resolve to a guarded stand-in rather than the real callable:
#: ``bytes(10**10)`` in a 20-byte payload would allocate 10 GB in the worker.
_GUARDED_GLOBALS: dict[tuple[str, str], Any] = {
    ("builtins", "bytes"): _no_size_argument(bytes),
    ("builtins", "bytearray"): _no_size_argument(bytearray),
}


# How _reject_memo_bombs steps over each opcode: >= 0 is the size of a fixed argument;
# the negative codes below name the other argument shapes and the opcodes it checks.
_UNKNOWN, _LONG_BINPUT, _PUT, _LINE, _LINE_PAIR, _LEN1, _LEN4, _LEN4U, _LEN8U, _STOP = range(-1, -11, -1)


def _opcode_steps() -> list[int]:
    """A 256-entry table, opcode byte -> step code, built from pickletools' own descriptions."""
    prefixed = {pickletools.TAKEN_FROM_ARGUMENT1: _LEN1, pickletools.TAKEN_FROM_ARGUMENT4: _LEN4,
                pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4U, pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8U}
    steps = [_UNKNOWN] * 256
    for op in pickletools.opcodes:
        arg = op.arg
        if op.name in ("EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"):
            step = _UNKNOWN  # the extension registry and persistent ids: refused outright
        elif op.name in ("LONG_BINPUT", "PUT", "STOP"):
            step = {"LONG_BINPUT": _LONG_BINPUT, "PUT": _PUT, "STOP": _STOP}[op.name]
        elif arg is None:
            step = 0
        elif arg.n >= 0:
            step = arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            step = _LINE_PAIR if arg.name.endswith("_pair") else _LINE
        else:
            step = prefixed[arg.n]
        steps[ord(op.code)] = step
    return steps


_STEPS = _opcode_steps()


_MEMOIZE = 0x94


def _reject_memo_bombs(data: bytes) -> None:
    """Refuse a memo index larger than the number of opcodes before it, before the C unpickler runs.

    The C unpickler grows its memo array to twice the largest index it is given and zeroes
    it: a 10-byte payload naming index 2**31 would make the worker touch 32 GiB. Picklers
    number memo entries from 0, one per memo opcode, so a legitimate index never exceeds the
    opcode count, and the memo then costs no more than the objects the opcodes build. Only
    PUT and LONG_BINPUT carry large indices, so a payload with neither an ``r`` nor a ``p``
    byte anywhere skips the walk; otherwise the walk costs about 0.07 µs per opcode (strings
    and bytes are skipped by their length). It runs on every request a worker decodes, so the
    loop handles the frequent steps inline: fixed-size arguments, short strings and the
    MEMOIZE that protocol 4+ puts after each of them (one iteration for the pair); the rest
    goes to :func:`_rare_step`. Reading past the end means a truncated pickle, which the
    unpickler reports.
    """
    if b"r" not in data and b"p" not in data:
        return
    steps, pos, end, count = _STEPS, 0, len(data), 0
    try:
        while pos < end:
            step = steps[data[pos]]
            count += 1
            if step >= 0:
                pos += 1 + step
            elif step == _LEN1:
                pos += 2 + data[pos + 1]
                if data[pos] == _MEMOIZE:
                    pos += 1
                    count += 1
            elif step == _LONG_BINPUT:
                if int.from_bytes(data[pos + 1:pos + 5], "little") > count:
                    raise BadRequest("payload uses an out-of-sequence memo index")
                pos += 5
            elif step == _STOP:
                return
            else:
                pos = _rare_step(data, pos, step, count)
                if pos < 0:
                    return
    except IndexError:
        return


def _rare_step(data: bytes, pos: int, step: int, count: int) -> int:
    """The position after the opcode at ``pos`` (long strings, text lines, PUT), or -1 to stop walking."""
    if step in (_LEN4, _LEN4U, _LEN8U):
        width = 8 if step == _LEN8U else 4
        length = int.from_bytes(data[pos + 1:pos + 1 + width], "little", signed=step == _LEN4)
        if length < 0:
            return -1  # the unpickler refuses a negative length
        return pos + 1 + width + length
    if step in (_LINE, _LINE_PAIR, _PUT):
        line_end = data.find(b"\n", pos + 1)
        if step == _LINE_PAIR and line_end >= 0:
            line_end = data.find(b"\n", line_end + 1)
        if line_end < 0:
            return -1  # truncated: the unpickler reports it
        if step == _PUT:
            index = data[pos + 1:line_end].strip()
            if not index.isdigit() or int(index) > count:
                raise BadRequest("payload uses an out-of-sequence or malformed memo index")
        return line_end + 1
    raise BadRequest(f"payload uses a forbidden or unknown pickle opcode 0x{data[pos]:02x}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolve only allow-listed globals; everything else is a :class:`BadRequest`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            guarded = _GUARDED_GLOBALS.get((module, name))
            return guarded if guarded is not None else super().find_class(module, name)
        raise BadRequest(f"payload refers to a forbidden global: {module}.{name}",
                         details={"global": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise BadRequest("payload uses persistent ids, which are not allowed")


#: A thread's kept pickler is dropped when a result grew its buffer past this (the memory stays with it).
_KEPT_BUFFER_BYTES = 1024 * 1024

#: One cloudpickle Pickler and its buffer per thread, reused: building them for each call (a
#: BytesIO, the Pickler and its dispatch tables) cost 2.1 of the 2.8 µs a small dict takes.
#: Emptied after each call (memo, buffer, globals table), it writes the same bytes.
_kept = threading.local()


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` with cloudpickle; an unpicklable object raises :class:`SerializationError`."""
    state = getattr(_kept, "state", None)
    _kept.state = None  # taken: an object's __reduce__ calling dumps() again builds its own
    if state is None:
        buffer = io.BytesIO()
        state = buffer, cloudpickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    buffer, pickler = state
    try:
        pickler.dump(obj)
    except Exception as exc:  # cloudpickle raises many types: TypeError, PicklingError, ...
        raise _unserializable(obj, exc) from exc  # a pickler that failed half-way is not kept
    data = buffer.getvalue()
    if len(data) <= _KEPT_BUFFER_BYTES:
        buffer.seek(0)
        buffer.truncate()
        pickler.clear_memo()
        pickler.globals_ref.clear()
        _kept.state = state
    return data


def _unserializable(obj: Any, exc: Exception) -> SerializationError:
    return SerializationError(f"cannot serialize {type(obj).__name__}: {exc}", details={"type": type(obj).__name__})


def loads_restricted(data: bytes) -> Any:
    """Decode untrusted bytes, admitting only plain data types; anything else is :class:`BadRequest`."""
    try:
        _reject_memo_bombs(data)
        return _RestrictedUnpickler(io.BytesIO(data), fix_imports=False).load()
    except BadRequest:
        raise
    except Exception as exc:  # truncated or corrupt pickles raise a zoo of exception types
        raise BadRequest(f"undecodable payload: {type(exc).__name__}: {exc}") from exc


def loads_trusted(data: bytes | memoryview) -> Any:
    """Decode bytes (or a buffer, which saves a copy) from a trusted peer with full (cloud)pickle semantics."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"undecodable data: {type(exc).__name__}: {exc}") from exc
