"""A failed CURVE handshake names the key to check, on the client's side (issue 11).

Real broker processes in secure and plain mode; the sync and async clients against each.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from fluxon.client import AsyncConnectionHandler, ConnectionHandler
from fluxon.errors import ConfigurationError, ConnectionError
from fluxon.keys import derive_keys, generate_private_key, write_private_key
from test_broker_support import start_broker


@pytest.fixture
def secure_broker(procs, tmp_path):
    key_file = tmp_path / "deploy.key"
    private_key = generate_private_key()
    write_private_key(key_file, private_key)
    broker = start_broker(procs, "--key-file", str(key_file), keys=derive_keys(private_key))
    return broker


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _call_sync(port: int, **kwargs):
    with ConnectionHandler("127.0.0.1", port, **kwargs) as client:
        return client.send_request("echo", 1)


def _call_async(port: int, **kwargs):
    async def call():
        async with AsyncConnectionHandler("127.0.0.1", port, **kwargs) as client:
            return await client.send_request("echo", 1)
    return asyncio.run(call())


CALLERS = [pytest.param(_call_sync, id="sync"), pytest.param(_call_async, id="async")]
WRONG_KEY = derive_keys(generate_private_key()).broker.public_text


@pytest.mark.parametrize("call", CALLERS)
@pytest.mark.parametrize("kwargs, expected", [
    ({"server_key": WRONG_KEY}, "check that server_key is this broker's public key"),
    ({}, "the broker requires CURVE; pass server_key="),
], ids=["wrong-server-key", "plain-client"])
def test_handshake_failure_against_a_secure_broker_says_which_key_gh11(secure_broker, call, kwargs,
                                                                        expected) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="handshake with the broker at .* failed") as failed:
        call(_port(secure_broker.frontend), timeout_s=None, **kwargs)   # no timeout: it still ends
    assert expected in str(failed.value)
    assert time.monotonic() - started < 5.0


@pytest.mark.parametrize("call", CALLERS)
def test_secure_client_against_a_plain_broker_gh11(procs, call) -> None:
    broker = start_broker(procs)
    with pytest.raises(ConnectionError, match="broker is plain|not running --insecure"):
        call(_port(broker.frontend), timeout_s=None, server_key=WRONG_KEY)


def test_server_key_file_is_accepted_gh11(procs, secure_broker, tmp_path) -> None:
    import subprocess

    from support import fluxon_argv

    pub = tmp_path / "broker.pub"
    result = subprocess.run(fluxon_argv("pubkey", "--key-file", str(tmp_path / "deploy.key")),
                            capture_output=True, text=True, timeout=60)
    pub.write_text(result.stdout)
    assert f"'{secure_broker.keys.broker.public_text}'" in secure_broker.log()   # printed, quoted
    with ConnectionHandler("127.0.0.1", _port(secure_broker.frontend), server_key_file=pub,
                           timeout_s=2.0) as client:   # no worker: the handshake still succeeds
        with pytest.raises(Exception) as raised:
            client.send_request("echo", 1)
        assert not isinstance(raised.value, ConnectionError)
    with pytest.raises(ConfigurationError, match="holds no Z85 public key"):
        ConnectionHandler("127.0.0.1", 1, server_key_file=tmp_path / "deploy.key")
    with pytest.raises(ConfigurationError, match="not both"):
        ConnectionHandler("127.0.0.1", 1, server_key_file=pub, server_key=WRONG_KEY)


@pytest.mark.parametrize("security, expected", [
    (["--insecure"], "the broker requires CURVE; give --key-file"),
    (["--key-file", "OTHER"], "check that --key-file is this deployment's private key"),
], ids=["insecure", "another-deployment"])
def test_ctl_against_a_secure_broker_names_the_key_gh11(secure_broker, tmp_path, security, expected) -> None:
    import subprocess

    from support import fluxon_argv

    other = tmp_path / "other.key"
    write_private_key(other, generate_private_key())
    security = [str(other) if arg == "OTHER" else arg for arg in security]
    started = time.monotonic()
    done = subprocess.run(fluxon_argv("ctl", *security, "--control", secure_broker.control, "--timeout-s", "60",
                                      "status"), capture_output=True, text=True, timeout=90)
    assert done.returncode == 1 and expected in done.stderr, done.stderr
    assert "handshake" in done.stderr and time.monotonic() - started < 30
