"""Payload and result (de)serialization, with a restricted decoder for untrusted bytes.

Requests travel as pickles (the seed's API sends any Python object), but a pickle
is a program: unpickling network bytes is remote code execution. So:

- the broker never unpickles anything;
- a worker decodes request payloads with :func:`loads_restricted`, an unpickler
  whose ``find_class`` resolves only plain data types (``ALLOWED_GLOBALS``) and
  refuses every other global before any of the payload's code can run. Before the
  unpickler runs, :func:`fluxon.pickle_scan.scan_pickle` walks the opcodes within the
  budgets of :class:`DecodeLimits` (size, nesting depth, expanded size, element counts,
  integer size, collidable hash keys, total work), so a data-only pickle cannot crash,
  stall or bloat the worker either; protocol 2 names Python 2 modules and is refused;
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

import decimal
import functools
import io
import pickle
import threading
from collections.abc import Mapping
from typing import Any

import cloudpickle

from fluxon.errors import BadRequest, SerializationError
from fluxon.pickle_scan import DecodeLimits, scan_pickle

__all__ = ["ALLOWED_GLOBALS", "DEFAULT_DECODE_LIMITS", "DecodeLimits", "dumps", "loads_restricted",
           "loads_trusted"]

#: The budgets :func:`loads_restricted` uses when it is given none.
DEFAULT_DECODE_LIMITS = DecodeLimits()

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


def _bounded_int(limits: DecodeLimits) -> Any:
    """``int`` for REDUCE, refusing a result larger than ``max_int_bytes``."""
    def construct(*args: Any) -> int:
        value = int(*args)
        if value.bit_length() > 8 * limits.max_int_bytes:
            raise BadRequest(f"payload has an integer larger than max_int_bytes={limits.max_int_bytes}",
                             details={"limit": "max_int_bytes", "bound": limits.max_int_bytes})
        return value
    construct.__qualname__ = construct.__name__ = "int"
    return construct


def _bounded_decimal(limits: DecodeLimits) -> Any:
    """``Decimal`` for REDUCE, refusing too many digits or too large an exponent.

    A Decimal is cheap to hold but not to use: ``int(Decimal("1e1000000"))`` builds a
    million-digit integer, for seconds, in whatever view first converts it.
    """
    def construct(*args: Any) -> decimal.Decimal:
        if args and isinstance(args[0], str) and len(args[0]) > limits.max_decimal_digits + 32:
            raise _decimal_limit("max_decimal_digits", limits.max_decimal_digits)
        value = decimal.Decimal(*args)
        sign, digits, exponent = value.as_tuple()
        if len(digits) > limits.max_decimal_digits:
            raise _decimal_limit("max_decimal_digits", limits.max_decimal_digits)
        if isinstance(exponent, int) and abs(exponent + len(digits)) > limits.max_decimal_exponent:
            raise _decimal_limit("max_decimal_exponent", limits.max_decimal_exponent)
        return value
    construct.__qualname__ = construct.__name__ = "Decimal"
    return construct


def _decimal_limit(name: str, bound: int) -> BadRequest:
    return BadRequest(f"payload has a Decimal beyond {name}={bound}", details={"limit": name, "bound": bound})


@functools.lru_cache(maxsize=16)
def _guarded_globals(limits: DecodeLimits) -> dict[tuple[str, str], Any]:
    """Allowed globals that resolve to a guarded stand-in rather than the real callable.

    ``bytes(10**10)`` in a 20-byte payload would allocate 10 GB in the worker.
    """
    return {("builtins", "bytes"): _no_size_argument(bytes),
            ("builtins", "bytearray"): _no_size_argument(bytearray),
            ("builtins", "int"): _bounded_int(limits),
            ("decimal", "Decimal"): _bounded_decimal(limits)}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolve only allow-listed globals; everything else is a :class:`BadRequest`."""

    def __init__(self, data: bytes, limits: DecodeLimits, substitutes: Mapping[tuple[str, str], Any]) -> None:
        super().__init__(io.BytesIO(data), fix_imports=False)
        self._guarded = _guarded_globals(limits)
        self._substitutes = substitutes

    def find_class(self, module: str, name: str) -> Any:
        substitute = self._substitutes.get((module, name))
        if substitute is not None:
            return substitute
        if (module, name) in ALLOWED_GLOBALS:
            guarded = self._guarded.get((module, name))
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


def loads_restricted(data: bytes | memoryview, limits: DecodeLimits = DEFAULT_DECODE_LIMITS, *,
                     substitutes: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Decode untrusted bytes, admitting only plain data types within ``limits``.

    Anything else is a :class:`BadRequest`; one that exceeds a budget names it in
    ``details["limit"]``. Nothing of the payload is built before its walk has passed.
    ``substitutes`` maps further (module, name) globals to the callable that stands in
    for them (the client's model rows); nothing is imported for them.
    """
    if not isinstance(data, bytes):
        data = bytes(data)
    substitutes = substitutes or {}
    allowed = ALLOWED_GLOBALS | frozenset(substitutes) if substitutes else ALLOWED_GLOBALS
    try:
        scan_pickle(data, limits, allowed)
        return _RestrictedUnpickler(data, limits, substitutes).load()
    except BadRequest:
        raise
    except RecursionError as exc:
        raise BadRequest("undecodable payload: nested too deeply") from exc
    except Exception as exc:  # truncated or corrupt pickles raise a zoo of exception types
        raise BadRequest(f"undecodable payload: {type(exc).__name__}: {str(exc)[:200]}") from exc


def loads_trusted(data: bytes | memoryview) -> Any:
    """Decode bytes (or a buffer, which saves a copy) from a trusted peer with full (cloud)pickle semantics."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(f"undecodable data: {type(exc).__name__}: {exc}") from exc
