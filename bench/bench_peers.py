"""Fluxon beside its peers, in one invocation: the C ``zmq.proxy`` hop, Zero, Pyro5 and zerorpc.

    python bench/bench_peers.py [--duration-s 2] [--repeat 3] [--only proxy,zero,fluxon-secure]

(``pip install -e '.[bench]'`` installs the peers: zeroapi, Pyro5, zerorpc.)

Every server and worker is its own process, and so is every load generator: each case runs in a
fresh client process that reports its own CPU time, while the benchmark reads the servers' CPU
time from ``/proc`` around the measured window. Repetitions rotate the order of the contenders so
that background load on this shared machine hits them alike; the report gives medians of the
per-repetition figures and of the per-repetition ratios to the proxy and to Zero.

Contenders (a small dict echoed; 2 worker processes wherever the peer has workers):

- proxy: a raw DEALER client that does no per-request bookkeeping (the payload is pickled once, a
  reply is counted, not decoded) -> C ``zmq.proxy`` ROUTER/DEALER -> 2 REP echo processes. With 1
  in flight it times each round trip, which every contender does at 1 in flight.
- zero: ``zeroapi`` (a C proxy in front of worker processes, msgspec), ``ZeroServer.run(workers=2)``.
- fluxon-plain / fluxon-plain-async / fluxon-secure: ``fluxon broker`` + ``fluxon worker
  --processes 2``; a ``def`` view (``async def`` for -async); secure = CURVE on every hop + sessions.
- pyro5: a threaded Pyro5 daemon, no broker; one proxy per client thread.
- zerorpc: a zerorpc server process; 64 greenlets on one client.

Cases: ``async64`` (64 requests in flight from one client: asyncio tasks, or greenlets for zerorpc),
``threads64`` (64 threads sharing one client object where the peer allows it), ``sync1`` (one
request at a time; p50 latency) and, for fluxon-secure and the raw CURVE echo, ``mib8`` (1 MiB
payloads, 8 in flight; bandwidth). The machine is noisy: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq
from zmq.utils import z85

from bench_messaging import _dealer_window, _endpoint, _Procs, _proxy, _start_fluxon
from fluxon.routing import Router

HERE = Path(__file__).resolve().parent
SMALL = {"user": "ada", "id": 12345, "tags": ["a", "b", "c"], "active": True, "score": 3.5}
MIB = b"\x5a" * (1024 * 1024)
WORKERS = 2

router = Router()


@router.route("echo")
def echo_view(request):
    """The view most users write: a plain ``def``, run on the worker's view threads."""
    return request.payload


@router.route("aecho")
async def aecho_view(request):
    """The same view as ``async def``, run on the worker's event loop."""
    return request.payload


# --------------------------------------------------------------------------- server processes


def _rep_echo(endpoint: str) -> None:
    """Proxy baseline worker: a REP socket behind the proxy's DEALER backend."""
    sock = zmq.Context().socket(zmq.REP)
    sock.connect(endpoint)
    while True:
        sock.send(sock.recv(copy=False), copy=False)


def _curve_echo(endpoint: str, secret_hex: str) -> None:
    """The 1 MiB baseline: a CURVE ROUTER that sends every message straight back."""
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_secretkey = bytes.fromhex(secret_hex)
    sock.bind(endpoint)
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def _zero_server(port: str) -> None:
    from zero import ZeroServer

    app = ZeroServer(host="127.0.0.1", port=int(port))
    app.register_rpc(echo)
    app.run(workers=WORKERS)


def echo(msg: dict) -> dict:
    """Zero's RPC function (module level: Zero pickles it into its worker processes)."""
    return msg


class PyroEcho:
    def echo(self, msg: dict) -> dict:
        return msg


def _pyro_server(port: str) -> None:
    import Pyro5.api

    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=int(port))
    daemon.register(Pyro5.api.expose(PyroEcho), "echo")
    daemon.requestLoop()


def _zerorpc_server(endpoint: str) -> None:
    import zerorpc

    class Echo:
        def echo(self, msg: dict) -> dict:
            return msg

    server = zerorpc.Server(Echo())
    server.bind(endpoint)
    server.run()


_ROLES: dict[str, Callable[..., None]] = {"rep-echo": _rep_echo, "proxy": _proxy, "curve-echo": _curve_echo,
                                           "zero": _zero_server, "pyro5": _pyro_server, "zerorpc": _zerorpc_server}


def _role(procs: _Procs, name: str, *args: str) -> None:
    procs.start([sys.executable, str(HERE / "bench_peers.py"), "--role", name, *args], name)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- client processes


def _timed(call: Callable[[], object], duration_s: float) -> dict[str, float]:
    """One request at a time for ``duration_s``: round trips per second and latency percentiles."""
    for _ in range(50):
        call()
    latencies: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    stop = start + duration_s
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"n": len(latencies), "elapsed_s": elapsed, "client_cpu_s": time.process_time() - cpu0,
            "p50_us": latencies[len(latencies) // 2] * 1e6,
            "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6}


def _threads(make_call: Callable[[], Callable[[], object]], n_threads: int, duration_s: float) -> dict[str, float]:
    """``n_threads`` callers, each looping on its own call until the deadline; counts only."""
    counts = [0] * n_threads
    start_gate, stop_at = threading.Barrier(n_threads + 1, timeout=60), [0.0]

    def caller(i: int) -> None:
        call = make_call()
        for _ in range(5):
            call()
        start_gate.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            call()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start_gate.wait()
    cpu0, start = time.process_time(), time.perf_counter()
    stop_at[0] = start + duration_s
    for t in threads:
        t.join()
    return {"n": sum(counts), "elapsed_s": time.perf_counter() - start, "client_cpu_s": time.process_time() - cpu0}


def _tasks(make_coro: Callable[[], Callable[[], object]], inflight: int, duration_s: float) -> dict[str, float]:
    """``inflight`` asyncio tasks looping on one client until the deadline; counts only."""

    async def main() -> dict[str, float]:
        call = await make_coro()  # type: ignore[misc]
        await asyncio.gather(*(call() for _ in range(inflight)))
        stop = time.perf_counter() + duration_s
        counts = [0] * inflight

        async def caller(i: int) -> None:
            n = 0
            while time.perf_counter() < stop:
                await call()
                n += 1
            counts[i] = n

        cpu0, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(inflight)))
        return {"n": sum(counts), "elapsed_s": time.perf_counter() - start,
                "client_cpu_s": time.process_time() - cpu0}

    return asyncio.run(main())


def _proxy_sync(endpoint: str, duration_s: float) -> dict[str, float]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.connect(endpoint)
    body = pickle.dumps(SMALL, 5)

    def call() -> object:
        sock.send(body)
        return pickle.loads(sock.recv())

    return _timed(call, duration_s)


def _client(kind: str, target: str, case: str, duration_s: float) -> dict[str, float]:
    """Run one case against one contender, in this (fresh) process."""
    spec = json.loads(target)
    if kind == "proxy":
        if case == "sync1":
            return _proxy_sync(spec["endpoint"], duration_s)
        return _dealer_window(spec["endpoint"], [b"", pickle.dumps(SMALL, 5)], 64, duration_s)
    if kind == "curve-echo":
        return _dealer_window(spec["endpoint"], [MIB], 8, duration_s, bytes.fromhex(spec["server_key"]))
    if kind == "zero":
        from zero import AsyncZeroClient, ZeroClient

        if case == "async64":
            async def make() -> Callable[[], object]:
                client = AsyncZeroClient("127.0.0.1", spec["port"])
                await client.call("echo", SMALL)  # one call first: concurrent first calls race its connect
                return lambda: client.call("echo", SMALL)
            return _tasks(make, 64, duration_s)
        client = ZeroClient("127.0.0.1", spec["port"])
        if case == "threads64":
            return _threads(lambda: (lambda: client.call("echo", SMALL)), 64, duration_s)
        return _timed(lambda: client.call("echo", SMALL), duration_s)
    if kind == "pyro5":
        import Pyro5.api

        uri = f"PYRO:echo@127.0.0.1:{spec['port']}"
        if case == "threads64":
            def per_thread() -> Callable[[], object]:
                proxy = Pyro5.api.Proxy(uri)
                return lambda: proxy.echo(SMALL)
            return _threads(per_thread, 64, duration_s)
        proxy = Pyro5.api.Proxy(uri)
        return _timed(lambda: proxy.echo(SMALL), duration_s)
    if kind == "zerorpc":
        return _zerorpc_client(spec["endpoint"], duration_s)
    return _fluxon_client(spec, case, duration_s)


def _fluxon_client(spec: dict, case: str, duration_s: float) -> dict[str, float]:
    from fluxon.client import AsyncConnectionHandler, ConnectionHandler

    server_key = spec.get("server_key")
    route, payload = spec["route"], (MIB if case == "mib8" else SMALL)
    if case in ("async64", "mib8"):
        async def make() -> Callable[[], object]:
            conn = AsyncConnectionHandler("127.0.0.1", spec["port"], server_key=server_key, timeout_s=30)
            return lambda: conn.send_request(route, payload)
        return _tasks(make, 64 if case == "async64" else 8, duration_s)
    conn = ConnectionHandler("127.0.0.1", spec["port"], server_key=server_key, timeout_s=30)
    if case == "threads64":
        return _threads(lambda: (lambda: conn.send_request(route, payload)), 64, duration_s)
    return _timed(lambda: conn.send_request(route, payload), duration_s)


def _zerorpc_client(endpoint: str, duration_s: float) -> dict[str, float]:
    import gevent
    import zerorpc

    client = zerorpc.Client(timeout=30, heartbeat=None)
    client.connect(endpoint)
    for _ in range(20):
        client.echo(SMALL)
    counts = [0] * 64
    cpu0, start = time.process_time(), time.perf_counter()
    stop = start + duration_s

    def caller(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            client.echo(SMALL)
            n += 1
        counts[i] = n

    gevent.joinall([gevent.spawn(caller, i) for i in range(64)])
    return {"n": sum(counts), "elapsed_s": time.perf_counter() - start, "client_cpu_s": time.process_time() - cpu0}


# --------------------------------------------------------------------------- contenders


@contextmanager
def _serve(name: str, procs: _Procs) -> Iterator[tuple[str, dict, list[int], list[int]]]:
    """Start a contender; yield (client kind, target spec, broker pids, worker pids)."""
    if name == "proxy":
        front, back = _endpoint(), _endpoint()
        _role(procs, "proxy", front, back)
        for _ in range(WORKERS):
            _role(procs, "rep-echo", back)
        time.sleep(0.5)
        yield "proxy", {"endpoint": front}, [procs.procs[-3].pid], [p.pid for p in procs.procs[-2:]]
    elif name == "curve-echo":
        public, secret = zmq.curve_keypair()
        endpoint = _endpoint()
        _role(procs, "curve-echo", endpoint, z85.decode(secret).hex())
        time.sleep(0.5)
        yield "curve-echo", {"endpoint": endpoint, "server_key": z85.decode(public).hex()}, [procs.procs[-1].pid], []
    elif name == "zero":
        port = int(_endpoint().rsplit(":", 1)[1])
        _role(procs, "zero", str(port))
        time.sleep(2.0)  # Zero forks its workers after binding; there is no readiness signal to wait for
        root = procs.procs[-1].pid
        yield "zero", {"port": port}, [root], _children(root)
    elif name == "pyro5":
        port = int(_endpoint().rsplit(":", 1)[1])
        _role(procs, "pyro5", str(port))
        time.sleep(1.0)
        yield "pyro5", {"port": port}, [procs.procs[-1].pid], []
    elif name == "zerorpc":
        endpoint = _endpoint()
        _role(procs, "zerorpc", endpoint)
        time.sleep(1.0)
        yield "zerorpc", {"endpoint": endpoint}, [procs.procs[-1].pid], []
    else:
        yield from _serve_fluxon(name, procs)


def _serve_fluxon(name: str, procs: _Procs) -> Iterator[tuple[str, dict, list[int], list[int]]]:
    port, server_key = _start_fluxon(procs, "bench_peers:router", name == "fluxon-secure", WORKERS)
    broker, supervisor = procs.procs[-2].pid, procs.procs[-1].pid
    spec = {"port": port, "route": "aecho" if name.endswith("-async") else "echo",
            "server_key": server_key.decode() if server_key else None}
    yield "fluxon", spec, [broker], _children(supervisor)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


CASES = {"proxy": ["async64", "sync1"], "zero": ["async64", "threads64", "sync1"],
         "fluxon-plain": ["async64", "threads64", "sync1"], "fluxon-plain-async": ["async64"],
         "fluxon-secure": ["async64", "threads64", "sync1", "mib8"], "curve-echo": ["mib8"],
         "pyro5": ["threads64", "sync1"], "zerorpc": ["async64"]}


def _measure(name: str, tmp: Path, duration_s: float) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with _Procs(tmp) as procs, _serve(name, procs) as (kind, spec, brokers, workers):
        for case in CASES[name]:
            before = [_cpu_s(pid) for pid in brokers + workers]
            out = subprocess.run([sys.executable, str(HERE / "bench_peers.py"), "--client", kind, json.dumps(spec),
                                  case, str(duration_s)], capture_output=True, text=True, cwd=HERE, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"{name} {case}: {out.stderr[-2000:]}")
            spent = [_cpu_s(pid) - b for pid, b in zip(brokers + workers, before)]
            r = json.loads(out.stdout.strip().splitlines()[-1])
            n = r["n"]
            r.update(rps=n / r["elapsed_s"], cpu_client_us=r["client_cpu_s"] / n * 1e6,
                     cpu_broker_us=sum(spent[:len(brokers)]) / n * 1e6,
                     cpu_worker_us=statistics.mean(spent[len(brokers):]) / n * 1e6 if workers else 0.0)
            results[case] = r
    return results


def _report(runs: dict[str, list[dict[str, dict]]]) -> None:
    def med(name: str, case: str, key: str) -> float:
        return statistics.median(r[case][key] for r in runs[name])

    def ratio(name: str, base: str, case: str, base_case: str | None = None) -> str:
        if base not in runs or base_case is None and case not in CASES[base]:
            return "-"
        return f"{statistics.median(a[case]['rps'] / b[base_case or case]['rps'] for a, b in zip(runs[name], runs[base])):.2f}"

    print(f"{'contender':20} {'case':10} {'req/s':>9} {'/proxy':>7} {'/zero':>7} {'p50 us':>8} "
          f"{'cpu us: client':>15} {'broker':>7} {'worker':>7}")
    for name in runs:
        for case in CASES[name]:
            p50 = f"{med(name, case, 'p50_us'):8.0f}" if case == "sync1" else f"{'-':>8}"
            proxy_case = "async64" if case in ("async64", "threads64") else case
            base = "curve-echo" if case == "mib8" else "proxy"
            print(f"{name:20} {case:10} {med(name, case, 'rps'):9.0f} {ratio(name, base, case, proxy_case):>7} "
                  f"{ratio(name, 'zero', case) if case != 'mib8' else '-':>7} {p50} "
                  f"{med(name, case, 'cpu_client_us'):15.0f} {med(name, case, 'cpu_broker_us'):7.0f} "
                  f"{med(name, case, 'cpu_worker_us'):7.0f}")
    if "zero" in runs:
        print("\np50 latency / Zero's p50 (sync1, medians of per-repetition ratios):")
        for name in runs:
            if "sync1" in CASES[name] and name != "zero":
                lat = statistics.median(a["sync1"]["p50_us"] / z["sync1"]["p50_us"] for a, z in zip(runs[name], runs["zero"]))
                cpu = statistics.median(_total_cpu(a["sync1"]) / _total_cpu(z["sync1"]) for a, z in zip(runs[name], runs["zero"]))
                print(f"  {name:20} p50 {lat:5.2f}   total CPU per request {cpu:5.2f}")


def _total_cpu(r: dict) -> float:
    return r["cpu_client_us"] + r["cpu_broker_us"] + r["cpu_worker_us"] * WORKERS


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--role":
        _ROLES[sys.argv[2]](*sys.argv[3:])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        print(json.dumps(_client(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=2.0, help="measured time per case")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions, in rotating order (medians are printed)")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated contenders")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    runs: dict[str, list[dict[str, dict]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="fluxon-peers-") as tmp:
        for rep in range(args.repeat):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                runs[name].append(_measure(name, Path(tmp), args.duration_s))
                print(f"  rep {rep + 1}: {name} done", file=sys.stderr, flush=True)
    _report(runs)


if __name__ == "__main__":
    main()
