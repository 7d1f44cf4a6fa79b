"""Issue 17: broker metrics (`ctl metrics`, --metrics-bind) and JSON logs with request ids."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fluxon.broker.metrics import BrokerMetrics, parse_bind
from fluxon.connect import ConnectionHandler
from fluxon.errors import ViewError
from fluxon.keys import derive_keys, generate_private_key, write_private_key
from e2e_support import APP, HEARTBEAT
from support import REPO_ROOT, fluxon_argv, free_port, free_tcp_endpoint, wait_for


def _samples(text: str) -> dict[tuple, float]:
    """Every sample of a text exposition as {(name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _start(procs, tmp_path, *broker_args: str, env: dict[str, str] | None = None, key_args=("--insecure",),
           worker_args: tuple[str, ...] = ()):
    """A broker (with ``env``) and one worker (``worker_args``), as separate processes."""
    port, backend, control = free_port(), free_tcp_endpoint(), free_tcp_endpoint()
    broker = procs.start(fluxon_argv("broker", "--bind", f"tcp://127.0.0.1:{port}", "--backend", backend,
                                     "--control", control, "--heartbeat-interval-s", HEARTBEAT, *key_args,
                                     *broker_args), env=env, cwd=REPO_ROOT, name="broker")
    procs.wait_log(broker, "broker ready")
    worker = procs.start(fluxon_argv("worker", APP, "--connect", backend, "--heartbeat-interval-s", HEARTBEAT,
                                     *key_args, *worker_args), cwd=REPO_ROOT, name="worker")
    procs.wait_log(worker, "worker ready")
    return port, control, broker, worker


def test_ctl_metrics_and_http_endpoint_count_exactly_the_requests_sent(procs, tmp_path):
    port, control, broker, _ = _start(procs, tmp_path, "--metrics-bind", "127.0.0.1:0")
    url = wait_for(lambda: re.search(r"metrics served at (http://\S+)", procs.log(broker)), 10).group(1)
    with ConnectionHandler("127.0.0.1", port, timeout_s=10.0) as client:
        for i in range(5):
            assert client.send_request("echo", i) == i
        for _ in range(2):
            with pytest.raises(ViewError):
                client.send_request("boom")
    ctl = subprocess.run(fluxon_argv("ctl", "--control", control, "--insecure", "metrics"),
                         capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert ctl.returncode == 0, ctl.stderr
    with urllib.request.urlopen(url, timeout=10) as response:
        http_text = response.read().decode()
    for text in (ctl.stdout, http_text):
        samples = _samples(text)
        assert samples[("fluxon_requests_total", (("outcome", "ok"), ("route", "echo")))] == 5
        assert samples[("fluxon_requests_total", (("outcome", "view_error"), ("route", "boom")))] == 2
        assert samples[("fluxon_request_duration_seconds_count", (("route", "echo"),))] == 5
        assert samples[("fluxon_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "boom")))] == 2
        assert samples[("fluxon_workers", ())] == 1
        assert samples[("fluxon_credit", ())] == 16
        assert samples[("fluxon_queue_depth", ())] == 0
        assert samples[("fluxon_sessions", ())] == 1
        assert samples[("fluxon_bytes_received_total", ())] > 0
        assert samples[("fluxon_bytes_sent_total", ())] > 0
        assert not [k for k in samples if k[0] == "fluxon_requests_total" and k[1][1][1] not in ("echo", "boom")]


def test_json_logs_parse_and_one_request_id_is_in_broker_and_worker_lines(procs, tmp_path):
    key_file = tmp_path / "deploy.key"
    private_key = generate_private_key()
    write_private_key(key_file, private_key)
    public = derive_keys(private_key).broker.public_text
    port, control, broker, worker = _start(
        procs, tmp_path, "--slow-request-ms", "0", env={"FLUXON_LOG_FORMAT": "json"},
        key_args=("--key-file", str(key_file)), worker_args=("--slow-request-ms", "0", "--log-format", "json"))
    with ConnectionHandler("127.0.0.1", port, server_key=public, timeout_s=10.0) as client:
        with pytest.raises(ViewError) as failure:
            client.send_request("boom")
    request_id = failure.value.details["request_id"]
    assert isinstance(request_id, int)

    def lines(proc) -> list[dict]:
        return [json.loads(line) for line in procs.log(proc).splitlines() if line.strip()]
    wait_for(lambda: any(l.get("request_id") == request_id for l in lines(broker)), 10)
    wait_for(lambda: any(l.get("request_id") == request_id for l in lines(worker)), 10)
    for line in lines(broker) + lines(worker):
        assert {"time", "level", "logger", "message"} <= set(line)
    ready = next(l for l in lines(broker) if l["message"].startswith("broker ready"))
    assert ready["public_key"] == public
    slow = next(l for l in lines(broker) if l.get("request_id") == request_id)
    assert slow["route"] == "boom" and slow["outcome"] == "view_error" and slow["worker"]
    assert {"queued_ms", "run_ms", "total_ms"} <= set(slow)
    assert next(l for l in lines(worker) if l.get("request_id") == request_id)["route"] == "boom"


def test_route_labels_are_bounded():
    metrics = BrokerMetrics()
    for i in range(300):
        metrics.observe(f"r{i}", "ok", 0.001)
    metrics.observe("nope", "route_not_found", 0.001)
    assert len(metrics.routes) == 258 and metrics.routes["_other"].count == 300 - 256
    assert metrics.routes["_unknown"].outcomes == {"route_not_found": 1}


@pytest.mark.parametrize("bind, expected", [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)),
                                            (":9464", ("127.0.0.1", 9464)), ("9464", None), ("h:x", None)])
def test_parse_bind(bind, expected):
    if expected is None:
        with pytest.raises(ValueError):
            parse_bind(bind)
    else:
        assert parse_bind(bind) == expected


def test_bad_metrics_bind_is_a_usage_error():
    result = subprocess.run(fluxon_argv("broker", "--insecure", "--metrics-bind", "nowhere", "--bind",
                                        free_tcp_endpoint(), "--backend", free_tcp_endpoint(), "--control", "none"),
                            capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert result.returncode == 1 and "HOST:PORT" in result.stderr
