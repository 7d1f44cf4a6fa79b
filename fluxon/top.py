"""``fluxon ctl metrics`` and ``fluxon top``: the broker's counters, as text or as a live view.

Both ask the control socket's ``metrics`` command (Prometheus text plus the raw
counters). ``top`` asks again every ``--interval-s`` and shows what changed in
between: requests/s and p50/p99 latency per route (from the histogram's buckets,
interpolated within a bucket), the workers with their credit and requests in
flight, queue depth and sessions. It redraws the terminal in place and leaves on
``q`` or Ctrl-C; on a stream that is not a terminal it prints one frame per
interval (``--frames N`` stops after N).
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import click

from fluxon.errors import FluxonError

__all__ = ["metrics_command", "top_command", "fluxon_top", "run_top", "render_top", "quantile_s"]

_CLEAR = "\x1b[H\x1b[2J"


def quantile_s(buckets: list[int], bounds_s: list[float], q: float) -> float | None:
    """The ``q`` quantile of a (non-cumulative) bucket histogram, linear within a bucket; None if empty.

    Past the last bound (the +Inf bucket) the last bound is returned: the histogram
    cannot say more.
    """
    total = sum(buckets)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(bounds_s):
                return bounds_s[-1]
            lower = bounds_s[index - 1] if index else 0.0
            return lower + (bounds_s[index] - lower) * (rank - seen) / count
        seen += count
    return bounds_s[-1]


def _route_rows(now: Mapping[str, Any], before: Mapping[str, Any] | None, dt_s: float) -> list[list[str]]:
    bounds = now["snapshot"]["buckets_s"]
    old = (before or {}).get("snapshot", {}).get("routes", {})
    rows = []
    for route, stats in sorted(now["snapshot"]["routes"].items()):
        prev = old.get(route, {"count": 0, "buckets": [0] * len(stats["buckets"]), "outcomes": {}})
        delta = [a - b for a, b in zip(stats["buckets"], prev["buckets"])]
        rate = (stats["count"] - prev["count"]) / dt_s if before is not None and dt_s > 0 else None
        p50, p99 = quantile_s(delta, bounds, 0.5), quantile_s(delta, bounds, 0.99)
        errors = sum(n for outcome, n in stats["outcomes"].items() if outcome != "ok")
        rows.append([route, "-" if rate is None else f"{rate:.1f}", _ms(p50), _ms(p99),
                     str(stats["outcomes"].get("ok", 0)), str(errors)])
    return rows


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in (header, *rows)]


def render_top(now: Mapping[str, Any], before: Mapping[str, Any] | None, dt_s: float,
               where: str = "") -> str:
    """One frame of ``fluxon top`` from two answers of the ``metrics`` command ``dt_s`` apart."""
    status, workers = now["status"], now["workers"]
    credit = sum(w["credit"] for w in workers)
    in_flight = sum(w["in_flight"] for w in workers)
    lines = [f"fluxon top  {where}  uptime {status['uptime_s']:.0f} s  (q or Ctrl-C quits)",
             f"workers {len(workers)}  credit in use {in_flight}/{credit}  queue {status['queue_depth']}  "
             f"sessions {status['sessions']}  requests {status['requests_total']}", ""]
    lines += _table(["ROUTE", "REQ/S", "P50 MS", "P99 MS", "OK", "ERRORS"], _route_rows(now, before, dt_s))
    lines.append("")
    lines += _table(["WORKER", "HOST", "PID", "CREDIT", "IN-FLIGHT", "SERVED"],
                    [[w["id"][:12], str(w["host"]), str(w["pid"]), str(w["credit"]), str(w["in_flight"]),
                      str(w["served"])] for w in workers])
    return "\n".join(lines)


def run_top(fetch: Callable[[], Any], *, interval_s: float = 1.0, frames: int | None = None,
            stdin: TextIO | None = None, out: Callable[[str], None] = click.echo, where: str = "") -> None:
    """Redraw the view every ``interval_s`` until ``q``, Ctrl-C, or ``frames`` frames were shown."""
    stdin = stdin or sys.stdin
    restore = _cbreak(stdin)
    interactive = restore is not None
    before: Any = None
    taken = 0.0
    shown = 0
    try:
        while frames is None or shown < frames:
            try:
                now, at = fetch(), time.monotonic()
                frame = render_top(now, before, at - taken, where)
                before, taken = now, at
            except FluxonError as exc:
                frame = f"fluxon top  {where}\n\nno answer from the broker: {exc.message}"
            out((_CLEAR if interactive else "") + frame + ("" if interactive else "\n"))
            shown += 1
            if frames is not None and shown >= frames:
                break
            if _wait_for_quit(stdin, interval_s, interactive):
                break
    except KeyboardInterrupt:
        pass
    finally:
        if restore is not None:
            restore()


def _cbreak(stdin: TextIO) -> Callable[[], None] | None:
    """Put a terminal in cbreak mode (keys arrive one by one, Ctrl-C still works); returns the undo."""
    try:
        import termios
        import tty

        fd = stdin.fileno()
        if not os.isatty(fd):
            return None
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
    except (ImportError, OSError, ValueError, AttributeError):
        return None
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_quit(stdin: TextIO, interval_s: float, interactive: bool) -> bool:
    """Wait ``interval_s``; True when ``q`` was typed meanwhile."""
    if not interactive:
        time.sleep(interval_s)
        return False
    deadline = time.monotonic() + interval_s
    fd = stdin.fileno()
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready and os.read(fd, 1) in (b"q", b"Q"):
            return True
    return False


@click.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print the raw counters as JSON instead.")
@click.pass_obj
def metrics_command(console: Any, as_json: bool) -> None:
    """The broker's metrics in the Prometheus text format."""
    answer = console.call("metrics")
    if as_json or console.json_output:
        console.show(answer["snapshot"], json_output=True)
    else:
        console.echo(answer["text"].rstrip("\n"))


@click.command("top")
@click.option("--interval-s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.pass_obj
def top_command(console: Any, interval_s: float, frames: int | None) -> None:
    """A live view: requests/s and p50/p99 per route, workers, queue, sessions (q quits)."""
    run_top(lambda: console.transport.call("metrics"), interval_s=interval_s, frames=frames,
            out=lambda text: console.echo(text), where=console.transport.describe())


@click.command("top")
@click.option("--control", "endpoint", default="tcp://127.0.0.1:8082", show_default=True,
              envvar="FLUXON_CONTROL", help="The broker's control endpoint.")
@click.option("--key-file", type=click.Path(dir_okay=False),
              help="The deployment's private key file (default: FLUXON_PRIVATE_KEY).")
@click.option("--insecure", is_flag=True, help="Plain control socket (a broker started with --insecure).")
@click.option("--interval-s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
def fluxon_top(endpoint: str, key_file: str | None, insecure: bool, interval_s: float,
               frames: int | None) -> None:
    """A live view of a running broker (the same as `fluxon ctl top`); q or Ctrl-C quits."""
    from fluxon.console import SocketTransport, _load_admin_keys

    transport = SocketTransport(endpoint, keys=None if insecure else _load_admin_keys(key_file))
    run_top(lambda: transport.call("metrics"), interval_s=interval_s, frames=frames,
            where=transport.describe())
