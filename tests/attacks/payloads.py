"""Hostile request payloads of issue 10, as raw pickles (built without running what they describe).

Each builder returns the bytes an attacker would send; building the value itself in the test
process would cost what the attack costs (a 40,000-way hash collision takes seconds to insert).
"""

from __future__ import annotations

import decimal
import pickle

#: Python's int hash is x mod (2**61 - 1): these ints all hash alike.
_HASH_MODULUS = 2**61 - 1


def deep_tuple_key(depth: int = 150_000) -> bytes:
    """``{((((...),),),): True}``: a dict keyed by a 1-tuple nested ``depth`` deep (~1 byte a level)."""
    return b"\x80\x05}" + b")" + b"\x85" * depth + b"\x88s."


def deep_list(depth: int) -> bytes:
    """A list nested ``depth`` deep, as pickle writes it (each list complete before its parent's APPEND)."""
    return b"\x80\x05" + b"]" * depth + b"a" * (depth - 1) + b"."


def decimal_exponent_bomb() -> bytes:
    """``Decimal("1e1000000")``: 53 bytes whose ``int()`` runs for seconds."""
    return pickle.dumps(decimal.Decimal("1e1000000"), protocol=5)


def colliding_int_set(count: int = 40_000) -> bytes:
    """A set of ``count`` distinct ints with one hash value (quadratic to insert)."""
    items = b"".join(_long1(1 + k * _HASH_MODULUS) for k in range(count))
    return b"\x80\x05\x8f(" + items + b"\x90."


def memo_expansion(items: int = 2**19, references: int = 200) -> bytes:
    """``[list("a" * items)] * references``: one list, referenced ``references`` times through the memo."""
    return pickle.dumps([list("a" * items)] * references, protocol=5)


def cheap_opcodes(size_bytes: int) -> bytes:
    """``size_bytes`` of NONE/POP pairs: the most opcodes per byte a pickle can hold."""
    return b"\x80\x05" + b"N0" * (size_bytes // 2) + b"N."


def _long1(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw
