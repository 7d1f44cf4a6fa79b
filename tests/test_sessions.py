"""SessionStore: signed key-bound tokens, rotation, expiry with an injected clock, and the SQLite file."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxon.broker.sessions import Session, SessionStore
from fluxon.errors import BadRequest, ConfigurationError, InvalidSession
from fluxon.keys import derive_keys, generate_client_keypair, generate_private_key

HMAC_KEY = derive_keys(generate_private_key()).session_hmac_key
KEY_A = generate_client_keypair().public_text
KEY_B = generate_client_keypair().public_text


class Clock:
    """A settable clock for the store (no sleeps in tests)."""

    def __init__(self, now: float = 1_764_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> SessionStore:
    s = SessionStore(tmp_path / "sessions.sqlite3", HMAC_KEY, idle_timeout_s=100,
                     absolute_lifetime_s=1000, rotation_grace_s=5, clock=clock)
    yield s
    s.close()


def changes(**body) -> bytes:
    return json.dumps(body).encode()


def test_first_contact_creates_a_session_and_its_token_resolves(store) -> None:
    session = store.resolve(KEY_A, b"")
    assert isinstance(session, Session) and session.user_id is None and session.data == {}
    assert store.resolve(KEY_A, session.token) is session
    sid, issued, mac = session.token.split(b".")
    assert sid.decode() == session.sid and int(issued) > 0 and len(mac) == 43
    assert session.token.decode() not in repr(session)
    assert len(store) == 1


def test_empty_token_returns_this_keys_session_but_plain_mode_always_a_new_one(store) -> None:
    first = store.resolve(KEY_A, b"")
    assert store.resolve(KEY_A, b"") is first
    assert store.resolve(KEY_B, b"") is not first
    plain_1, plain_2 = store.resolve("", b""), store.resolve("", b"")
    assert plain_1 is not plain_2 and store.resolve("", plain_1.token) is plain_1


def _tampered(token: bytes) -> list[bytes]:
    sid, issued, mac = token.split(b".")
    flipped = mac[:-1] + (b"A" if mac[-1:] != b"A" else b"B")
    return [
        token.upper(), token.lower(), token + b"x", token + b".", b"x" + token,
        token.replace(b".", b"", 1), token.replace(b".", b""), sid + b"." + issued + b"." + flipped,
        sid + b"." + str(int(issued) + 1).encode() + b"." + mac,
        sid[:-1] + (b"A" if sid[-1:] != b"A" else b"B") + b"." + issued + b"." + mac,
        sid + b".0" + issued + b"." + mac, token[:-1], token[: len(token) // 2], token[:1],
        b".".join([sid, issued]), b"..", b"\xff" * 80, token * 10,
    ]


def test_tampered_and_truncated_tokens_are_refused(store, caplog) -> None:
    session = store.resolve(KEY_A, b"")
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        for bad in _tampered(session.token):
            with pytest.raises(InvalidSession):
                store.resolve(KEY_A, bad)
    assert "refused session token" in caplog.text
    assert session.token.decode() not in caplog.text and session.sid not in caplog.text
    assert store.resolve(KEY_A, session.token) is session


def test_token_replayed_under_another_key_is_refused(store) -> None:
    session = store.resolve(KEY_A, b"")
    with pytest.raises(InvalidSession, match="another client key"):
        store.resolve(KEY_B, session.token)
    with pytest.raises(InvalidSession):
        store.resolve("", session.token)  # nor by a plain-mode peer
    plain = store.resolve("", b"")
    with pytest.raises(InvalidSession):
        store.resolve(KEY_A, plain.token)
    assert store.resolve(KEY_A, session.token) is session


def test_token_of_another_deployment_is_refused(tmp_path, clock) -> None:
    other = SessionStore(None, derive_keys(generate_private_key()).session_hmac_key, clock=clock)
    mine = SessionStore(None, HMAC_KEY, clock=clock)
    foreign = other.resolve(KEY_A, b"")
    with pytest.raises(InvalidSession, match="bad signature"):
        mine.resolve(KEY_A, foreign.token)


def test_idle_timeout(store, clock) -> None:
    session = store.resolve(KEY_A, b"")
    clock.now += 90
    assert store.resolve(KEY_A, session.token) is session  # seen again: the idle timer restarts
    clock.now += 90
    assert store.resolve(KEY_A, session.token) is session
    clock.now += 101
    with pytest.raises(InvalidSession, match="expired"):
        store.resolve(KEY_A, session.token)
    assert len(store) == 0
    with pytest.raises(InvalidSession):
        store.resolve(KEY_A, session.token)
    assert store.resolve(KEY_A, b"").sid != session.sid


def test_absolute_lifetime_even_when_active(store, clock) -> None:
    session = store.resolve(KEY_A, b"")
    for _ in range(10):
        clock.now += 99
        assert store.resolve(KEY_A, session.token) is session
    clock.now += 20  # 1010 s after creation
    with pytest.raises(InvalidSession, match="expired"):
        store.resolve(KEY_A, session.token)


def test_expired_session_of_a_key_is_replaced_on_empty_token(store, clock) -> None:
    session = store.resolve(KEY_A, b"")
    clock.now += 200
    fresh = store.resolve(KEY_A, b"")
    assert fresh.sid != session.sid and len(store) == 1


def test_purge_expired(store, clock) -> None:
    old = store.resolve(KEY_A, b"")
    clock.now += 60
    young = store.resolve(KEY_B, b"")
    clock.now += 60
    assert store.purge_expired() == 1
    assert store.get(old.sid) is None and store.get(young.sid) is young
    assert store.purge_expired() == 0


def test_login_rotates_sid_and_token_and_keeps_data(store) -> None:
    session = store.resolve(KEY_A, b"")
    session = store.apply_changes(session, changes(data={"cart": [1, 2]}))
    logged_in = store.apply_changes(session, changes(login=42))
    assert logged_in.user_id == 42 and logged_in.data == {"cart": [1, 2]}
    assert logged_in.sid != session.sid and logged_in.token != session.token
    assert store.get(session.sid) is None and store.resolve(KEY_A, logged_in.token) is logged_in
    assert json.loads(logged_in.context("1.2.3.4:5", False, False)) == {
        "sid": logged_in.sid, "uid": 42, "data": {"cart": [1, 2]}, "peer": "1.2.3.4:5",
        "key": KEY_A, "trusted": False, "debug": False}


def test_old_token_follows_a_rotation_only_briefly_and_only_for_its_key(store, clock) -> None:
    session = store.resolve(KEY_A, b"")
    logged_in = store.apply_changes(session, changes(login="alice"))
    assert store.resolve(KEY_A, session.token) is logged_in  # pipelined request in the grace period
    with pytest.raises(InvalidSession):
        store.resolve(KEY_B, session.token)
    # a change applied through the stale session object lands on the current session
    assert store.apply_changes(session, changes(data={"x": 1})) is logged_in
    assert logged_in.data == {"x": 1}
    clock.now += 6
    with pytest.raises(InvalidSession):
        store.resolve(KEY_A, session.token)
    assert store.resolve(KEY_A, logged_in.token) is logged_in


def test_logout_clears_user_and_data_and_rotates(store) -> None:
    session = store.apply_changes(store.resolve(KEY_A, b""), changes(login=7, data={"a": 1}))
    logged_out = store.apply_changes(session, changes(logout=True))
    assert logged_out.user_id is None and logged_out.data == {}
    assert logged_out.sid != session.sid
    kept = store.apply_changes(logged_out, changes(login=8))
    kept = store.apply_changes(kept, changes(logout=True, data={"theme": "dark"}))
    assert kept.user_id is None and kept.data == {"theme": "dark"}


def test_data_change_keeps_sid_and_updates_the_cached_context(store) -> None:
    session = store.resolve(KEY_A, b"")
    before = session.context("", True, True)
    assert session.context("", True, True) is before
    same = store.apply_changes(session, changes(data={"n": 1}))
    assert same is session and same.token == session.token
    assert json.loads(session.context("", True, True))["data"] == {"n": 1}
    assert store.apply_changes(session, b"") is session


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", b'"x"', changes(login=True), changes(login=None), changes(login=1.5),
    changes(login=""), changes(login="u" * 256), changes(logout=False), changes(logout=1),
    changes(login=1, logout=True), changes(data=[1]), changes(data="x"), changes(evil=1),
    changes(data={"big": "x" * 70_000}), b"\xff\xfe",
])
def test_malformed_changes_are_bad_requests(store, bad) -> None:
    session = store.resolve(KEY_A, b"")
    with pytest.raises(BadRequest):
        store.apply_changes(session, bad)
    assert store.get(session.sid) is session and session.user_id is None


def test_kill_ends_a_session(store) -> None:
    session = store.apply_changes(store.resolve(KEY_A, b""), changes(login=1))
    assert store.kill(session.sid) and not store.kill(session.sid)
    with pytest.raises(InvalidSession):
        store.resolve(KEY_A, session.token)
    assert store.apply_changes(session, changes(data={"late": 1})) is session  # dropped, no resurrection
    assert store.get(session.sid) is None


def test_list_sessions_most_recent_first(store, clock) -> None:
    a = store.resolve(KEY_A, b"")
    clock.now += 5
    b = store.resolve(KEY_B, b"")
    assert store.list_sessions() == [b, a]


def test_reload_from_the_file_keeps_sessions_logins_and_tokens(tmp_path, clock) -> None:
    path = tmp_path / "sessions.sqlite3"
    first = SessionStore(path, HMAC_KEY, clock=clock)
    a = first.apply_changes(first.resolve(KEY_A, b""), changes(login=5, data={"k": [1, "two"]}))
    b = first.resolve(KEY_B, b"")
    clock.now += 10
    first.resolve(KEY_B, b.token)
    first.close()
    second = SessionStore(path, HMAC_KEY, clock=clock)
    a2, b2 = second.resolve(KEY_A, a.token), second.resolve(KEY_B, b"")
    assert (a2.sid, a2.user_id, a2.data, a2.token) == (a.sid, 5, {"k": [1, "two"]}, a.token)
    assert b2.sid == b.sid and b2.last_seen == clock.now
    assert second.resolve(KEY_A, b"") is a2  # the key finds its session after a restart
    second.close()
    rotated_key = SessionStore(path, derive_keys(generate_private_key()).session_hmac_key, clock=clock)
    with pytest.raises(InvalidSession):
        rotated_key.resolve(KEY_A, a.token)  # a new private key invalidates every token
    rotated_key.close()


def test_expired_rows_are_dropped_at_load(tmp_path, clock) -> None:
    path = tmp_path / "sessions.sqlite3"
    first = SessionStore(path, HMAC_KEY, idle_timeout_s=50, clock=clock)
    first.resolve(KEY_A, b"")
    first.close()
    clock.now += 51
    second = SessionStore(path, HMAC_KEY, idle_timeout_s=50, clock=clock)
    assert len(second) == 0
    second.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM fluxon_sessions").fetchone() == (0,)


def test_acknowledged_changes_survive_kill_9(tmp_path) -> None:
    """A process applies changes and is killed with SIGKILL without close(); a new store sees them."""
    path = tmp_path / "sessions.sqlite3"
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        from fluxon.broker.sessions import SessionStore
        store = SessionStore({str(path)!r}, bytes.fromhex({HMAC_KEY.hex()!r}))
        s = store.resolve({KEY_A!r}, b"")
        s = store.apply_changes(s, json.dumps({{"login": "bob", "data": {{"n": 1}}}}).encode())
        t = store.resolve({KEY_B!r}, b"")
        t = store.apply_changes(t, b'{{"data": {{"m": 2}}}}')
        print(json.dumps([s.token.decode(), t.token.decode()]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -9, proc.stderr
    token_a, token_b = json.loads(proc.stdout)
    store = SessionStore(path, HMAC_KEY)
    a, b = store.resolve(KEY_A, token_a.encode()), store.resolve(KEY_B, token_b.encode())
    assert (a.user_id, a.data) == ("bob", {"n": 1}) and b.data == {"m": 2}
    store.close()


def test_memory_only_store_and_bad_configuration(tmp_path) -> None:
    memory = SessionStore(None, HMAC_KEY)
    s = memory.apply_changes(memory.resolve(KEY_A, b""), changes(login=1))
    assert memory.resolve(KEY_A, s.token) is s
    memory.flush()
    memory.close()
    with pytest.raises(ConfigurationError):
        SessionStore(None, b"short")
    with pytest.raises(ConfigurationError):
        SessionStore(None, HMAC_KEY, idle_timeout_s=0)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(ConfigurationError, match="session file"):
        SessionStore(folder, HMAC_KEY)


def test_repeated_refusals_are_logged_once_per_interval(store, caplog) -> None:
    session = store.resolve(KEY_A, b"")
    with caplog.at_level(logging.WARNING, logger="fluxon.security"):
        for _ in range(50):
            with pytest.raises(InvalidSession):
                store.resolve(KEY_B, session.token)
    assert len([r for r in caplog.records if "refused session token" in r.getMessage()]) == 1


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_mutation_of_a_token_is_refused(data) -> None:
    store = SessionStore(None, HMAC_KEY)
    session = store.resolve(KEY_A, b"")
    token = bytearray(session.token)
    position = data.draw(st.integers(0, len(token) - 1))
    action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    byte = data.draw(st.integers(0, 255))
    if action == "replace":
        token[position] = byte
    elif action == "delete":
        del token[position]
    else:
        token.insert(position, byte)
    if bytes(token) == session.token:
        return
    with pytest.raises(InvalidSession):
        store.resolve(KEY_A, bytes(token))


def test_a_full_store_evicts_the_least_recently_seen_anonymous_sessions_only(tmp_path, clock) -> None:
    store = SessionStore(tmp_path / "full.sqlite3", HMAC_KEY, max_sessions=3, clock=clock)
    try:
        logged_in = store.apply_changes(store.resolve("", b""), changes(login=7))
        clock.now += 10
        oldest_anonymous = store.resolve("", b"")
        clock.now += 10
        newer_anonymous = store.resolve("", b"")
        clock.now += 10
        newest = store.resolve("", b"")  # the store was full: one anonymous session makes way
        assert len(store) == 3
        with pytest.raises(InvalidSession):
            store.resolve("", oldest_anonymous.token)
        for kept in (logged_in, newer_anonymous, newest):
            assert store.resolve("", kept.token).sid == kept.sid
    finally:
        store.close()


def test_a_store_full_of_logged_in_sessions_refuses_new_ones(clock) -> None:
    from fluxon.errors import Overloaded

    store = SessionStore(None, HMAC_KEY, max_sessions=1, clock=clock)
    store.apply_changes(store.resolve("", b""), changes(login="ada"))
    with pytest.raises(Overloaded):
        store.resolve("", b"")


def test_secure_bridge_refuses_a_request_without_an_authenticated_key() -> None:
    from fluxon.broker.config import BrokerConfig
    from fluxon.broker.sessions_bridge import SessionBridge
    from fluxon.errors import Unauthorized

    bridge = SessionBridge.open(BrokerConfig(keys=derive_keys(generate_private_key())))
    try:
        with pytest.raises(Unauthorized):
            bridge.resolve("", b"", "127.0.0.1")
        session, context = bridge.resolve(KEY_A, b"", "127.0.0.1")
        assert json.loads(context)["key"] == KEY_A and session.client_key == KEY_A
    finally:
        bridge.close()
