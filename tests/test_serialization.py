"""The restricted decoder: plain data round-trips, every code-running or memory-bomb payload is a BadRequest."""

from __future__ import annotations

import builtins
import datetime
import decimal
import os
import pickle
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxon.errors import BadRequest, SerializationError
from fluxon.serialization import ALLOWED_GLOBALS, dumps, loads_restricted, loads_trusted

PLAIN = {
    "str": "héllo", "bytes": b"\x00\xff", "bytearray": bytearray(b"ab"), "int": -(10**30),
    "float": 1.5, "complex": 2 + 3j, "bools": [True, False], "none": None,
    "tuple": (1, "a"), "set": {1, 2}, "frozenset": frozenset({"x"}),
    "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    "aware": datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    "utc": datetime.timezone.utc, "date": datetime.date(2024, 1, 2), "time": datetime.time(1, 2, 3),
    "timedelta": datetime.timedelta(days=2, seconds=3), "decimal": decimal.Decimal("1.10"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"), "safe_uuid": uuid.uuid1(),
    "nested": {"a": [{"b": ({"c": 1},)}]},
}


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_plain_data_round_trips_at_every_protocol(protocol) -> None:
    assert loads_restricted(pickle.dumps(PLAIN, protocol=protocol)) == PLAIN


def test_protocol_2_is_refused_cleanly() -> None:
    """Protocol 2 names Python 2 modules (``__builtin__``, ``_codecs.encode``): not plain data."""
    with pytest.raises(BadRequest):
        loads_restricted(pickle.dumps({"b": b"x"}, protocol=2))


def test_plain_data_round_trips_through_cloudpickle_dumps() -> None:
    decoded = loads_restricted(dumps(PLAIN))
    assert decoded == PLAIN and decoded["safe_uuid"].is_safe == PLAIN["safe_uuid"].is_safe
    shared = [1, 2]
    decoded = loads_restricted(dumps({"a": shared, "b": shared, "big": list(range(600))}))
    assert decoded["a"] is decoded["b"] and decoded["big"] == list(range(600))


class _Evil:
    """Unpickling this would run ``callable(*args)``."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_payloads(marker: Path) -> dict[str, bytes]:
    command = f"touch {marker}"
    return {
        "os.system": pickle.dumps(_Evil(os.system, command)),
        "os.system protocol 0": pickle.dumps(_Evil(os.system, command), protocol=0),
        "subprocess.call": pickle.dumps(_Evil(subprocess.call, ["touch", str(marker)])),
        "builtins.open": pickle.dumps(_Evil(builtins.open, str(marker), "w")),
        "builtins.exec": pickle.dumps(_Evil(builtins.exec, f"open({str(marker)!r}, 'w')")),
        "builtins.eval": pickle.dumps(_Evil(builtins.eval, f"open({str(marker)!r}, 'w')")),
        "builtins.getattr": pickle.dumps(_Evil(getattr, [], "append")),
        "nested in data": dumps({"ok": 1, "x": [_Evil(os.system, command)]}),
        "cloudpickled lambda": dumps(lambda: os.system(command)),
        "a class": pickle.dumps(_Evil),
        # INST / OBJ opcodes of protocol 0/1 name a class too
        "INST": b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n.",
        # dotted names resolve attributes of allowed modules in protocol 4+
        "dotted name": b"\x80\x04\x8c\x08builtins\x8c\x11dict.__class__.mro\x93.",
        "allowed module, other name": b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.",
        "python 2 module name": b"c__builtin__\neval\n(S'1'\ntR.",
    }


def test_code_running_payloads_are_refused_before_they_run(tmp_path) -> None:
    marker = tmp_path / "pwned"
    for name, payload in _evil_payloads(marker).items():
        with pytest.raises(BadRequest):
            loads_restricted(payload)
        assert not marker.exists(), f"{name} ran its code"
    # the same payloads do run under full unpickling: the test would notice a real hole
    loads_trusted(_evil_payloads(marker)["os.system"])
    assert marker.exists()


def test_rejection_names_the_forbidden_global() -> None:
    with pytest.raises(BadRequest) as info:
        loads_restricted(pickle.dumps(_Evil(os.system, "true")))
    assert info.value.details["global"] in ("posix.system", "os.system")


def test_memo_index_bomb_is_refused_without_allocating() -> None:
    """A 10-byte payload naming memo index 2**31 would make the C unpickler zero 32 GiB."""
    for payload in (b"\x80\x05N" + b"r" + struct.pack("<I", 2**31 - 1) + b".",
                    b"\x80\x02N" + b"r" + struct.pack("<I", 70_000_000) + b".",
                    b"Np2147483647\n."):
        with pytest.raises(BadRequest, match="memo index"):
            loads_restricted(payload)


def test_size_argument_to_bytes_and_bytearray_is_refused() -> None:
    for name in ("bytes", "bytearray"):
        payload = (b"\x80\x04\x8c\x08builtins\x8c" + bytes([len(name)]) + name.encode()
                   + b"\x93J\x00\x00\x00\x40\x85R.")  # name(2**30)
        with pytest.raises(BadRequest, match="size"):
            loads_restricted(payload)


def test_enum_singletons_cannot_be_mutated() -> None:
    """uuid.SafeUUID is not allowed: BUILD on its singleton member would change it process-wide."""
    payload = (b"\x80\x04\x8c\x04uuid\x8c\x08SafeUUID\x93N\x85R}\x8c\x05_name_\x8c\x03bad\x73b.")
    with pytest.raises(BadRequest, match="SafeUUID"):
        loads_restricted(payload)
    assert uuid.SafeUUID.unknown.name == "unknown"


@pytest.mark.parametrize("payload", [
    b"\x80\x05\x82\x01.",                      # EXT1: the copyreg extension registry
    b"\x80\x02P0\n.", b"\x80\x02N\x51.",         # persistent ids
    b"\x80\x05\x97.",                          # out-of-band buffer
    b"", b"\x80", b"\x80\x05", b"garbage", b"\x80\x05\x8e" + struct.pack("<Q", 2**40) + b"x",
    b"\x80\x05X\xff\xff\xff\xffabc.",
    pickle.dumps(PLAIN)[:-5],
])
def test_malformed_and_forbidden_opcodes_are_bad_requests(payload) -> None:
    with pytest.raises(BadRequest):
        loads_restricted(payload)


def test_allowlist_is_exactly_plain_data() -> None:
    modules = {module for module, _ in ALLOWED_GLOBALS}
    assert modules == {"builtins", "datetime", "decimal", "uuid"}
    assert ("uuid", "SafeUUID") not in ALLOWED_GLOBALS


def test_dumps_and_loads_trusted_errors_are_typed() -> None:
    import threading
    with pytest.raises(SerializationError):
        dumps(threading.Lock())
    with pytest.raises(SerializationError):
        loads_trusted(b"not a pickle")
    assert loads_trusted(dumps(lambda x: x + 1))(1) == 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_only_ever_raise_bad_request(data) -> None:
    try:
        loads_restricted(b"\x80\x05" + data)
        loads_restricted(data)
    except BadRequest:
        pass


_plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20) | st.dates() | st.datetimes() | st.timedeltas() | st.uuids()
    | st.decimals(allow_nan=False),
    lambda children: st.lists(children, max_size=5) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_plain, st.sampled_from([3, 4, 5]))
def test_generated_plain_data_round_trips(value, protocol) -> None:
    assert loads_restricted(pickle.dumps(value, protocol=protocol)) == value


def test_unpickler_reads_only_what_it_is_given() -> None:
    """Bytes after STOP are ignored, as pickle does; a valid prefix still decodes."""
    assert loads_restricted(pickle.dumps([1, 2]) + b"trailing junk") == [1, 2]


def _closure_factory(base: int):
    return lambda x: x + base


def test_dumps_reuses_its_pickler_and_writes_exactly_cloudpickles_bytes() -> None:
    import threading

    import cloudpickle

    values = [PLAIN, [1, "x" * 200], _closure_factory(3), b"z" * (2 << 20), {"after": "a big one"}, PLAIN]
    for value in values:  # the kept pickler's memo, buffer and globals are emptied between calls
        assert dumps(value) == cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(SerializationError):
        dumps([1, threading.Lock()])              # a failure half-way ...
    assert dumps([1, 2]) == cloudpickle.dumps([1, 2], protocol=pickle.HIGHEST_PROTOCOL)  # ... leaves no trace

    class CallsDumpsWhilePickled:
        def __reduce__(self):
            return (bytes, (dumps(["inner"]),))   # dumps() re-entered from inside a dump

    assert pickle.loads(loads_trusted(dumps(CallsDumpsWhilePickled()))) == ["inner"]

    results: dict[int, list[bytes]] = {}

    def pickle_many(worker: int) -> None:
        results[worker] = [dumps({"worker": worker, "i": i}) for i in range(500)]

    threads = [threading.Thread(target=pickle_many, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker, blobs in results.items():
        assert [pickle.loads(blob) for blob in blobs] == [{"worker": worker, "i": i} for i in range(500)]
