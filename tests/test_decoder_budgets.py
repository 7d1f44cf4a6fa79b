"""The restricted decoder's budgets (issue 10): each hostile payload is a BadRequest naming its limit, fast.

The property tests build random nestings with shared (memo) references, compute their depth
and expanded size with an independent model, and check that the decoder refuses exactly
the values past a limit.
"""

from __future__ import annotations

import datetime
import decimal
import pickle
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks import payloads
from fluxon.errors import BadRequest, ConfigurationError
from fluxon.serialization import DEFAULT_DECODE_LIMITS, DecodeLimits, dumps, loads_restricted

#: Every refusal below must come this fast on a loaded 2-core machine (the decode itself is
#: micro- to milliseconds; the margin is for the machine, not for the decoder).
REFUSAL_S = 3.0


def _refused(payload: bytes, limits: DecodeLimits = DEFAULT_DECODE_LIMITS) -> BadRequest:
    started = time.monotonic()
    with pytest.raises(BadRequest) as info:
        loads_restricted(payload, limits)
    assert time.monotonic() - started < REFUSAL_S
    return info.value


@pytest.mark.parametrize("build, limit", [
    (payloads.deep_tuple_key, "max_depth"),
    (lambda: payloads.deep_list(5000), "max_depth"),
    (payloads.decimal_exponent_bomb, "max_decimal_exponent"),
    (payloads.colliding_int_set, "max_hashed_keys"),
    (payloads.memo_expansion, "max_expansion"),
    (lambda: payloads.cheap_opcodes(62_000_000), "max_payload_bytes"),
    (lambda: pickle.dumps(decimal.Decimal("1" * 5000)), "max_decimal_digits"),
    (lambda: pickle.dumps(2 ** 40_000), "max_int_bytes"),
], ids=["deep-tuple-key", "deep-list", "decimal-exponent", "hash-collisions", "memo-expansion",
        "62MB-cheap-opcodes", "decimal-digits", "huge-int"])
def test_hostile_payload_is_refused_naming_its_limit_gh10(build, limit) -> None:
    error = _refused(build())
    assert error.details["limit"] == limit
    assert limit in error.message


def test_cheap_opcodes_under_the_size_cap_stop_at_the_work_budget_gh10() -> None:
    limits = DecodeLimits(max_opcodes=100_000)
    error = _refused(payloads.cheap_opcodes(1_000_000), limits)
    assert error.details["limit"] == "max_opcodes"


def test_container_element_count_is_bounded() -> None:
    error = _refused(dumps(list(range(2000))), DecodeLimits(max_container_items=1000))
    assert error.details["limit"] == "max_container_items"
    assert loads_restricted(dumps(list(range(1000))), DecodeLimits(max_container_items=1000)) == list(range(1000))


def test_depth_at_the_limit_decodes_and_one_more_is_refused() -> None:
    limits = DecodeLimits(max_depth=50)
    value = loads_restricted(payloads.deep_list(50), limits)
    for _ in range(49):
        value = value[0]
    assert value == []
    assert _refused(payloads.deep_list(51), limits).details["limit"] == "max_depth"


def test_hashed_keys_exempt_strings_and_small_ints() -> None:
    """A dict of 10,000 str keys and a set of 10,000 small ints are ordinary payloads."""
    limits = DecodeLimits(max_hashed_keys=100)
    assert len(loads_restricted(dumps({f"k{i}": i for i in range(10_000)}), limits)) == 10_000
    assert len(loads_restricted(dumps(set(range(10_000))), limits)) == 10_000
    assert len(loads_restricted(dumps({(i, i): 1 for i in range(100)}), limits)) == 100
    assert _refused(dumps({(i, i): 1 for i in range(101)}), limits).details["limit"] == "max_hashed_keys"
    assert _refused(dumps({float(i) for i in range(101)}), limits).details["limit"] == "max_hashed_keys"
    assert _refused(dumps(frozenset(2**70 + i for i in range(101))), limits).details["limit"] == "max_hashed_keys"
    protocol3_set = pickle.dumps({(i,) for i in range(101)}, protocol=3)  # REDUCE set([...])
    assert _refused(protocol3_set, limits).details["limit"] == "max_hashed_keys"


def test_a_cycle_is_refused() -> None:
    cyclic: list = []
    cyclic.append([cyclic])
    with pytest.raises(BadRequest, match="cycle"):
        loads_restricted(dumps(cyclic))


@pytest.mark.parametrize("payload", [
    # REDUCE on something that is not a global, NEWOBJ of an allowed class other than UUID,
    # BUILD on a dict, APPEND to a dict, SETITEM on a list
    b"\x80\x05]K\x01\x85R.",
    b"\x80\x05\x8c\x08datetime\x8c\x04date\x93)\x81.",
    b"\x80\x05}}b.",
    b"\x80\x05}K\x01a.",
    b"\x80\x05]K\x01K\x02s.",
    b"\x80\x05\x8c\x04uuid\x8c\x04UUID\x93)\x81}b}b.",    # BUILD twice
])
def test_constructions_no_plain_type_needs_are_refused(payload) -> None:
    with pytest.raises(BadRequest):
        loads_restricted(payload)


def test_plain_types_that_need_reduce_newobj_build_still_decode() -> None:
    value = {"when": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc), "id": uuid.uuid4(),
             "price": decimal.Decimal("-1.25E+3"), "set": {1, 2}, "bytes": bytearray(b"x"), "c": 1j}
    for protocol in (3, 4, 5):
        assert loads_restricted(pickle.dumps(value, protocol=protocol)) == value


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="max_depth"):
        DecodeLimits(max_depth=0)


# ---------------------------------------------------------------- property tests


def _model(value) -> tuple[int, int]:
    """(depth, expanded size) as the decoder's budget counts them: see DecodeLimits."""
    if isinstance(value, (list, tuple)):
        parts = [_model(item) for item in value]
    elif isinstance(value, dict):
        parts = [_model(item) for pair in value.items() for item in pair]
    elif isinstance(value, str):
        return 0, len(value.encode())
    else:
        return 0, 8
    depth = 1 + max((d for d, _ in parts), default=0)
    return depth, 56 + sum(size + 8 for _, size in parts)


_leaves = st.integers(-2**40, 2**40) | st.text(max_size=12) | st.none() | st.booleans()


@st.composite
def _shared_nestings(draw):
    """Nestings of lists, tuples and dicts that reuse earlier sub-values (memo references)."""
    pool = [draw(_leaves)]
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["list", "tuple", "dict", "wrap"]))
        picks = draw(st.lists(st.sampled_from(pool) | _leaves, max_size=4))
        if kind == "list":
            pool.append(list(picks))
        elif kind == "tuple":
            pool.append(tuple(picks))
        elif kind == "dict":
            pool.append({f"k{i}": item for i, item in enumerate(picks)})
        else:
            pool.append([pool[-1]] * draw(st.integers(1, 6)))  # the same object several times
    return pool[-1]


@settings(max_examples=300, deadline=None)
@given(_shared_nestings(), st.integers(1, 12), st.integers(64, 20_000), st.sampled_from([3, 4, 5]))
def test_decoder_refuses_exactly_the_values_past_depth_or_expansion(value, max_depth, floor, protocol) -> None:
    depth, size = _model(value)
    data = pickle.dumps(value, protocol=protocol)
    limits = DecodeLimits(max_depth=max_depth, max_expansion=1, expansion_floor_bytes=floor)
    budget = max(floor, len(data))
    past = {name for name, over in (("max_depth", depth > max_depth), ("max_expansion", size > budget)) if over}
    try:
        decoded = loads_restricted(data, limits)
    except BadRequest as exc:
        assert exc.details.get("limit") in past, (exc.message, depth, size, budget)
    else:
        assert not past, (depth, size, budget)
        assert decoded == value


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64), min_size=1, max_size=200), st.integers(1, 150))
def test_hashed_key_budget_counts_every_collidable_key(ints, max_hashed) -> None:
    value = set(ints)
    collidable = sum(1 for i in value if i >= 2**55)  # LONG1 of 8 bytes or more
    try:
        assert loads_restricted(dumps(value), DecodeLimits(max_hashed_keys=max_hashed)) == value
    except BadRequest as exc:
        assert exc.details["limit"] == "max_hashed_keys" and collidable > max_hashed
    else:
        assert collidable <= max_hashed
