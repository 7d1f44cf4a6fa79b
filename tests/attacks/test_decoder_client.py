"""Replies in plain mode (issue 10): a rogue server that bound the port first runs no code in the client.

The rogue is a real ROUTER socket on a free loopback port answering every request with a
pickle that would run ``touch MARKER``; the sync and async clients must refuse it unless
``trust_server=True``, and still decode plain data and model rows.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from fluxon import protocol
from fluxon.client import AsyncConnectionHandler, ConnectionHandler
from fluxon.database.rows import Row
from fluxon.errors import SerializationError
from support import free_port


class _RunsCode:
    def __init__(self, *args) -> None:
        self.args = args

    def __reduce__(self):
        return os.system, self.args


class _RogueServer:
    """Answers every client request with ``reply`` (raw OK body), from its own thread."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.port = free_port()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(f"tcp://127.0.0.1:{self.port}")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self.stop.is_set():
            if not poller.poll(50):
                continue
            envelope, *frames = self.sock.recv_multipart()
            request = protocol.decode_client_request(frames)
            self.sock.send_multipart([envelope, *protocol.encode_client_reply(
                request.request_id, protocol.STATUS_OK, self.reply)])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        self.ctx.term()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def rogue(marker: Path) -> Iterator[_RogueServer]:
    server = _RogueServer(pickle.dumps(_RunsCode(f"touch {marker}")))
    yield server
    server.close()


def _sync_call(port: int, **kwargs):
    with ConnectionHandler("127.0.0.1", port, timeout_s=10, **kwargs) as conn:
        return conn.send_request("anything", {"x": 1})


def _async_call(port: int, **kwargs):
    async def go():
        async with AsyncConnectionHandler("127.0.0.1", port, timeout_s=10, **kwargs) as conn:
            return await conn.send_request("anything", {"x": 1})
    return asyncio.run(go())


@pytest.mark.parametrize("call", [_sync_call, _async_call], ids=["sync", "async"])
def test_plain_mode_reply_from_a_rogue_server_runs_no_code_gh10(rogue, marker, call) -> None:
    with pytest.raises(SerializationError, match="forbidden global") as info:
        call(rogue.port)
    assert "trust_server=True" in info.value.message
    assert not marker.exists()


def test_trust_server_keeps_full_unpickling(rogue, marker) -> None:
    """The same reply does run with trust_server=True: the refusal above is the decoder's doing."""
    _sync_call(rogue.port, trust_server=True)
    assert marker.exists()


class _Reduced:
    def __init__(self, func, args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("call", [_sync_call, _async_call], ids=["sync", "async"])
def test_plain_mode_still_decodes_plain_data_and_model_rows(call) -> None:
    """A model instance pickles as rebuild_row(module, qualname, values): the plain client
    builds a Row without importing the module the reply names."""
    from fluxon.database.rows import rebuild_row
    value = {"when": datetime.date(2024, 1, 2), "rows": [Row(id=1), 2.5]}
    for reply, check in ((pickle.dumps(value, protocol=5), lambda got: got == value),
                         (pickle.dumps(_Reduced(rebuild_row, ("os", "path", {"id": 7}))),
                          lambda got: isinstance(got, Row) and got.id == 7 and got.model_name == "path")):
        server = _RogueServer(reply)
        try:
            assert check(call(server.port))
        finally:
            server.close()


def test_plain_mode_reply_budgets_apply(marker) -> None:
    server = _RogueServer(b"\x80\x05" + b"]" * 5000 + b"a" * 4999 + b".")
    try:
        with pytest.raises(SerializationError, match="max_depth") as info:
            _sync_call(server.port)
        assert info.value.details["limit"] == "max_depth"
    finally:
        server.close()
