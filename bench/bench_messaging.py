"""Messaging benchmark: Fluxon against a raw pyzmq echo and a C ``zmq.proxy`` hop, in one run.

    python bench/bench_messaging.py [--duration-s 1.5] [--repeat 3] [--modes plain,secure]

For each repetition it measures every path below. Latencies come from a client that does the
same work on every path (pickle the payload, unpickle the reply, time each request); the raw and
proxy throughputs with several requests in flight come from a client that pickles once and only
counts replies, so that the baselines are as strong as they can be:

- raw:    DEALER client -> ROUTER echo process (no broker)
- proxy:  DEALER client -> ``zmq.proxy`` ROUTER/DEALER process -> 2 DEALER echo processes
- fluxon: ConnectionHandler / AsyncConnectionHandler -> ``fluxon broker`` -> ``fluxon worker
          --processes 2`` running an ``async def echo`` view (plain, and secure = CURVE + sessions)

cases: 1 request in flight (small dict), 64 in flight (small dict), 1 MiB payload (1 and 8 in
flight). It prints req/s, p50/p99 latency and the Fluxon/proxy ratios, medians over repetitions.
Every process it starts is killed by PID when it ends. The figures are noisy (2 shared cores):
compare ratios from one run, never absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from fluxon.routing import Router

HERE = Path(__file__).resolve().parent
SMALL = {"user": "ada", "id": 12345, "tags": ["a", "b", "c"], "active": True, "score": 3.5}
BIG = b"\x5a" * (1024 * 1024)

router = Router()


@router.route("echo")
async def echo(request):
    """The trivial view: return the payload."""
    return request.payload


# --------------------------------------------------------------------------- helper processes


def _echo_router(endpoint: str) -> None:
    """Raw baseline server: a ROUTER that sends every message straight back."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def _echo_dealer(endpoint: str) -> None:
    """Proxy baseline worker: a DEALER behind the proxy's backend, echoing with the envelope."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def _proxy(frontend: str, backend: str) -> None:
    """Proxy baseline broker: libzmq's C proxy, ROUTER in front, DEALER behind."""
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    front.bind(frontend)
    back.bind(backend)
    zmq.proxy(front, back)


_ROLES: dict[str, Callable[..., None]] = {"echo-router": _echo_router, "echo-dealer": _echo_dealer,
                                           "proxy": _proxy}


class _Procs:
    """Processes of one scenario, killed by PID (and process group) on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], name: str, env: dict | None = None, cwd: Path | None = None) -> Path:
        log_path = self.log_dir / f"{len(self.procs):02d}-{name}.log"
        with open(log_path, "wb") as log:
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                               env={**os.environ, **(env or {})}, start_new_session=True))
        return log_path

    def role(self, name: str, *args: str) -> None:
        self.start([sys.executable, str(HERE / "bench_messaging.py"), "--role", name, *args], name)

    def __enter__(self) -> _Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(5)


def _endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- load generators


def _summary(latencies: list[float], elapsed_s: float) -> dict[str, float]:
    latencies.sort()
    return {"rps": len(latencies) / elapsed_s,
            "p50_us": latencies[len(latencies) // 2] * 1e6,
            "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6}


def _raw_load(endpoint: str, payload: object, inflight: int, duration_s: float) -> dict[str, float]:
    """DEALER client keeping ``inflight`` requests outstanding; pickles and unpickles like Fluxon's client."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        sent: dict[int, float] = {}
        next_id = 0

        def send() -> None:
            nonlocal next_id
            next_id += 1
            sent[next_id] = time.perf_counter()
            sock.send_multipart([next_id.to_bytes(8, "big"), pickle.dumps(payload, 5)])

        for _ in range(inflight):  # warm-up round
            send()
        while sent:
            rid, body = sock.recv_multipart()
            pickle.loads(body)
            sent.pop(int.from_bytes(rid, "big"))
        latencies: list[float] = []
        start = time.perf_counter()
        stop = start + duration_s
        for _ in range(inflight):
            send()
        while sent:
            rid, body = sock.recv_multipart()
            pickle.loads(body)
            now = time.perf_counter()
            latencies.append(now - sent.pop(int.from_bytes(rid, "big")))
            if now < stop:
                send()
        return _summary(latencies, time.perf_counter() - start)
    finally:
        sock.close(0)


def _dealer_window(endpoint: str, frames: list[bytes], inflight: int, duration_s: float,
                   curve_server_key: bytes | None = None) -> dict[str, float]:
    """Raw DEALER keeping ``inflight`` messages outstanding: no ids, no timestamps, no decoding."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    if curve_server_key is not None:
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = curve_server_key
    sock.connect(endpoint)
    for _ in range(inflight):  # warm-up window
        sock.send_multipart(frames, copy=False)
    for _ in range(inflight):
        sock.recv_multipart(copy=False)
    n = 0
    cpu0, start = time.process_time(), time.perf_counter()
    stop = start + duration_s
    for _ in range(inflight):
        sock.send_multipart(frames, copy=False)
    outstanding, sending = inflight, True
    while outstanding:
        sock.recv_multipart(copy=False)
        n += 1
        outstanding -= 1
        if sending:
            sock.send_multipart(frames, copy=False)
            outstanding += 1
            sending = bool(n & 63) or time.perf_counter() < stop  # the clock is read once per 64 replies
    elapsed = time.perf_counter() - start
    sock.close(0)
    return {"n": n, "elapsed_s": elapsed, "client_cpu_s": time.process_time() - cpu0}


def _fluxon_load(port: int, payload: object, inflight: int, duration_s: float,
                 server_key: bytes | None) -> dict[str, float]:
    from fluxon.client import AsyncConnectionHandler, ConnectionHandler

    if inflight == 1:
        with ConnectionHandler("127.0.0.1", port, server_key=server_key) as conn:
            for _ in range(20):
                conn.send_request("echo", payload)
            latencies = []
            start = time.perf_counter()
            stop = start + duration_s
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                conn.send_request("echo", payload)
                latencies.append(time.perf_counter() - t0)
            return _summary(latencies, time.perf_counter() - start)

    async def main() -> dict[str, float]:
        async with AsyncConnectionHandler("127.0.0.1", port, server_key=server_key) as conn:
            await asyncio.gather(*(conn.send_request("echo", payload) for _ in range(inflight)))
            latencies: list[float] = []
            start = time.perf_counter()
            stop = start + duration_s

            async def caller() -> None:
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    await conn.send_request("echo", payload)
                    latencies.append(time.perf_counter() - t0)

            await asyncio.gather(*(caller() for _ in range(inflight)))
            return _summary(latencies, time.perf_counter() - start)

    return asyncio.run(main())


# --------------------------------------------------------------------------- scenarios

CASES = [("1 in flight, small dict", SMALL, 1), ("64 in flight, small dict", SMALL, 64),
         ("1 in flight, 1 MiB", BIG, 1), ("8 in flight, 1 MiB", BIG, 8)]


def _run_raw(log_dir: Path, duration_s: float) -> dict[str, dict]:
    with _Procs(log_dir) as procs:
        endpoint = _endpoint()
        procs.role("echo-router", endpoint)
        _wait(lambda: _raw_load(endpoint, 1, 1, 0.01)["rps"] > 0, 10, "raw echo")
        return {name: _baseline(endpoint, payload, n, duration_s) for name, payload, n in CASES}


def _run_proxy(log_dir: Path, duration_s: float) -> dict[str, dict]:
    with _Procs(log_dir) as procs:
        front, back = _endpoint(), _endpoint()
        procs.role("proxy", front, back)
        procs.role("echo-dealer", back)
        procs.role("echo-dealer", back)
        _wait(lambda: _raw_load(front, 1, 4, 0.05)["rps"] > 0, 10, "proxy")
        time.sleep(0.2)  # let the second echo worker connect, so both share the load
        return {name: _baseline(front, payload, n, duration_s) for name, payload, n in CASES}


def _baseline(endpoint: str, payload: object, inflight: int, duration_s: float) -> dict[str, float]:
    """A baseline's latency from the timed client, its throughput from the bookkeeping-free one.

    A client that timestamps every request and keeps a dict of them caps what the C proxy can
    show, and so flatters every ratio to it; the window client pickles once and only counts.
    """
    figures = _raw_load(endpoint, payload, inflight, duration_s)
    if inflight > 1:
        window = _dealer_window(endpoint, [pickle.dumps(payload, 5)], inflight, duration_s)
        figures["rps"] = window["n"] / window["elapsed_s"]
    return figures


def _start_fluxon(procs: _Procs, app: str, secure: bool, processes: int) -> tuple[int, bytes | None]:
    """A ``fluxon broker`` and ``fluxon worker --processes N`` serving ``app``, ready; (port, server key)."""
    from fluxon.broker import send_control_command
    from fluxon.keys import derive_keys, generate_private_key

    front, back, control = _endpoint(), _endpoint(), _endpoint()
    env, key_args, keys = {"FLUXON_PRIVATE_KEY": ""}, ["--insecure"], None
    if secure:
        private_key = generate_private_key()
        keys = derive_keys(private_key)
        env, key_args = {"FLUXON_PRIVATE_KEY": private_key}, []
    procs.start([sys.executable, "-m", "fluxon.cli", "--log-level", "WARNING", "broker", "--bind", front,
                 "--backend", back, "--control", control, *key_args], "broker", env)
    procs.start([sys.executable, "-m", "fluxon.cli", "--log-level", "WARNING", "worker", app, "--connect", back,
                 "--processes", str(processes), "--concurrency", "64", *key_args], "workers", env, cwd=HERE)
    _wait(lambda: send_control_command(control, "status", keys=keys, timeout_s=0.5)["workers"] == processes,
          30, f"broker and {processes} worker(s)")
    return int(front.rsplit(":", 1)[1]), (keys.broker.public if keys else None)


def _run_fluxon(log_dir: Path, duration_s: float, secure: bool, processes: int = 2) -> dict[str, dict]:
    with _Procs(log_dir) as procs:
        port, server_key = _start_fluxon(procs, "bench_messaging:router", secure, processes)
        return {name: _fluxon_load(port, payload, n, duration_s, server_key) for name, payload, n in CASES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=1.5, help="measured time per case")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--modes", default="plain,secure", help="fluxon modes: plain,secure")
    parser.add_argument("--worker-processes", type=int, default=2,
                        help="fluxon worker processes (the proxy always has 2 echo workers)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.role:
        _ROLES[args.role](*rest)
        return
    modes = [m for m in args.modes.split(",") if m]
    runs: dict[str, list[dict[str, dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="fluxon-bench-") as tmp:
        for rep in range(args.repeat):
            scenarios = {"raw": lambda: _run_raw(Path(tmp), args.duration_s),
                         "proxy": lambda: _run_proxy(Path(tmp), args.duration_s)}
            for mode in modes:
                scenarios[f"fluxon-{mode}"] = (lambda m=mode: _run_fluxon(Path(tmp), args.duration_s,
                                                                        m == "secure", args.worker_processes))
            for name, run in scenarios.items():
                runs.setdefault(name, []).append(run())
                print(f"  rep {rep + 1}: {name} done", file=sys.stderr, flush=True)
    _report(runs, modes)


def _median(runs: list[dict[str, dict]], case: str, key: str) -> float:
    return statistics.median(r[case][key] for r in runs)


def _report(runs: dict[str, list[dict[str, dict]]], modes: list[str]) -> None:
    print(f"{'case':28} {'path':14} {'req/s':>9} {'p50 us':>9} {'p99 us':>9}")
    for case, _, _ in CASES:
        for path, path_runs in runs.items():
            print(f"{case:28} {path:14} {_median(path_runs, case, 'rps'):9.0f} "
                  f"{_median(path_runs, case, 'p50_us'):9.0f} {_median(path_runs, case, 'p99_us'):9.0f}")
    print("\nratios (medians of per-repetition ratios, same run):")
    for mode in modes:
        flux = runs[f"fluxon-{mode}"]
        for case, _, _ in CASES:
            thr = statistics.median(f[case]["rps"] / p[case]["rps"] for f, p in zip(flux, runs["proxy"]))
            lat = statistics.median(f[case]["p50_us"] / p[case]["p50_us"] for f, p in zip(flux, runs["proxy"]))
            print(f"  fluxon-{mode:6} {case:28} throughput/proxy {thr:5.2f}   p50/proxy {lat:5.2f}")
    if "plain" in modes and "secure" in modes:
        for case, _, _ in CASES:
            ratio = statistics.median(s[case]["rps"] / p[case]["rps"]
                                      for s, p in zip(runs["fluxon-secure"], runs["fluxon-plain"]))
            print(f"  secure/plain   {case:28} throughput {ratio:5.2f}")


if __name__ == "__main__":
    main()
