"""The broker's metrics: plain counters on the hot path, Prometheus families at scrape time.

The broker loop only bumps attributes of :class:`BrokerMetrics` (an int, a list slot, a
dict entry per reply). prometheus_client's own ``Counter.inc`` takes a lock per call;
instead :class:`BrokerCollector` is registered in a dedicated ``CollectorRegistry`` and
turns those counters into metric families when someone scrapes (``fluxon ctl metrics``,
or the HTTP endpoint of ``fluxon broker --metrics-bind``). A scrape from the HTTP thread
reads the counters without a lock: each value is read atomically under the GIL, and a
scrape taken mid-update is at most one request behind.

Exposed families (``docs/operations.md`` says what each means)::

    fluxon_requests_total{route,outcome}        replies relayed from workers
    fluxon_request_duration_seconds{route}      histogram, dispatch to reply
    fluxon_refusals_total{kind}                 error replies and drops made by the broker itself
    fluxon_bytes_received_total / _sent_total   client traffic on the frontend
    fluxon_queue_depth, fluxon_workers, fluxon_credit, fluxon_credit_in_use, fluxon_sessions

Route names come from clients, so the label set is bounded: past ``MAX_ROUTES`` distinct
names new ones count as ``_other``, and a reply ``route_not_found`` counts as ``_unknown``.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from fluxon.broker.core import Broker

__all__ = ["BUCKETS_S", "MAX_ROUTES", "BrokerMetrics", "BrokerCollector", "MetricsServer", "make_registry",
           "parse_bind", "render_text"]

log = logging.getLogger("fluxon.broker")

#: Upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf.
BUCKETS_S: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                1.0, 2.5, 5.0, 10.0)
#: Distinct route labels kept; later names count as ``_other``.
MAX_ROUTES = 256
_OTHER, _UNKNOWN = "_other", "_unknown"


class RouteStats:
    """Counts for one route: replies by outcome, and the latency histogram's buckets."""

    __slots__ = ("outcomes", "buckets", "sum_s")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS_S) + 1)  # non-cumulative; the last one is +Inf
        self.sum_s = 0.0

    @property
    def count(self) -> int:
        """Replies observed (the histogram's count)."""
        return sum(self.buckets)


class BrokerMetrics:
    """What the broker loop counts; everything else is read from the broker at scrape time."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {}
        self.refusals: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        """One reply relayed: ``outcome`` is ``"ok"`` or the error code; ``seconds`` dispatch to reply."""
        stats = self.routes.get(route)
        if stats is None:
            stats = self._stats_for(route, outcome)
        outcomes = stats.outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        stats.buckets[bisect_left(BUCKETS_S, seconds)] += 1
        stats.sum_s += seconds

    def _stats_for(self, route: str, outcome: str) -> RouteStats:
        """The stats of a route seen for the first time: its own, ``_unknown`` or ``_other``."""
        if outcome == "route_not_found":
            route = _UNKNOWN  # never a label of its own: any client can invent route names
        elif len(self.routes) >= MAX_ROUTES:
            route = _OTHER
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        return stats

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (``fluxon top`` computes rates and percentiles from two)."""
        return {
            "routes": {route: _route_snapshot(stats) for route, stats in list(self.routes.items())},
            "buckets_s": list(BUCKETS_S),
            "refusals": dict(self.refusals),
            "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
        }


def _route_snapshot(stats: RouteStats) -> dict[str, Any]:
    buckets = list(stats.buckets)  # one copy: the count agrees with the buckets shown
    return {"outcomes": dict(stats.outcomes), "buckets": buckets, "sum_s": stats.sum_s, "count": sum(buckets)}


class BrokerCollector:
    """A prometheus_client collector that reads one broker's counters and state when scraped."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Any]:
        """The metric families, built from the counters as they are now."""
        broker = self.broker
        metrics: BrokerMetrics = broker.metrics
        requests = CounterMetricFamily("fluxon_requests", "Requests answered by a worker, by route and "
                                       "outcome (ok or the error code).", labels=["route", "outcome"])
        latency = HistogramMetricFamily("fluxon_request_duration_seconds",
                                        "Time from dispatch to a worker until its reply, by route.",
                                        labels=["route"])
        for route, stats in list(metrics.routes.items()):
            for outcome, count in list(stats.outcomes.items()):
                requests.add_metric([route, outcome], count)
            cumulative, total = [], 0
            for bound, count in zip((*map(repr, BUCKETS_S), "+Inf"), list(stats.buckets)):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([route], cumulative, sum_value=stats.sum_s)
        yield requests
        yield latency
        refusals = CounterMetricFamily("fluxon_refusals", "Error replies and drops made by the broker "
                                       "itself, by kind (overloaded, timeout, dropped...).", labels=["kind"])
        for kind, count in list(metrics.refusals.items()):
            refusals.add_metric([kind], count)
        yield refusals
        yield CounterMetricFamily("fluxon_bytes_received", "Bytes of client requests received.",
                                  value=metrics.bytes_in)
        yield CounterMetricFamily("fluxon_bytes_sent", "Bytes of replies sent to clients.",
                                  value=metrics.bytes_out)
        workers = list(broker.workers)
        yield GaugeMetricFamily("fluxon_queue_depth", "Requests waiting for a worker.",
                                value=broker.queue_depth)
        yield GaugeMetricFamily("fluxon_workers", "Registered workers.", value=len(workers))
        yield GaugeMetricFamily("fluxon_credit", "Requests the workers can run at once (sum of credits).",
                                value=sum(w.credit for w in workers))
        yield GaugeMetricFamily("fluxon_credit_in_use", "Requests running on workers now.",
                                value=sum(len(w.in_flight) for w in workers))
        yield GaugeMetricFamily("fluxon_sessions", "Sessions the broker holds.", value=len(broker.sessions))


def make_registry(broker: Broker) -> CollectorRegistry:
    """A registry of its own holding only this broker's collector (no process metrics mixed in)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker))
    return registry


def render_text(registry: CollectorRegistry) -> str:
    """The Prometheus text exposition format, written by prometheus_client."""
    return generate_latest(registry).decode("utf-8")


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) as (host, port); ValueError when malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics-bind wants HOST:PORT, got {bind!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """prometheus_client's HTTP exposition server for one registry, in a daemon thread."""

    def __init__(self, registry: CollectorRegistry, bind: str) -> None:
        from prometheus_client import start_http_server

        host, port = parse_bind(bind)
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host, self.port = host, self._server.server_address[1]
        log.info("metrics served at http://%s:%d/metrics", f"[{host}]" if ":" in host else host, self.port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

