"""Log output for every command: readable text lines, or one JSON object per line.

``--log-format json`` (or ``$FLUXON_LOG_FORMAT=json``, which child processes inherit)
makes each line a JSON object, for log shippers and ``jq``::

    {"time": "2026-12-01T23:59:01.123Z", "level": "INFO", "logger": "fluxon.broker",
     "message": "slow request 17 'echo': ...", "pid": 4242, "request_id": 17, "route": "echo",
     "worker": "00a1b2c3"}

``request_id``, ``route`` and ``worker`` appear when the line is about one request (the
broker's job id, which the worker sees too, so one request's lines can be joined across
processes); any other ``extra={...}`` field of :data:`CONTEXT_FIELDS` is copied as well.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "TEXT_FORMAT", "configure_logging", "json_logs", "log_format_parameter",
           "log_options",
           "log_slow_request", "slow_request_option"]

F = TypeVar("F", bound=Callable[..., Any])

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
#: Record attributes (set with ``extra=``) that a JSON line carries when present.
CONTEXT_FIELDS = ("request_id", "route", "worker", "outcome", "queued_ms", "run_ms", "total_ms",
                  "public_key", "frontend", "backend", "control", "metrics")
_FORMAT_ENV = "FLUXON_LOG_FORMAT"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, pid, context."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line: dict[str, Any] = {
            "time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "pid": record.process,
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str | int = "INFO", log_format: str | None = None) -> None:
    """Log to stderr as text (default) or JSON lines, through a root handler of our own.

    ``log_format=None`` reads ``$FLUXON_LOG_FORMAT``; an explicit choice is written to that
    variable so workers and other child processes log the same way. A process whose logging
    someone else configured first (a user's program, pytest) is left as it is.
    """
    chosen = log_format
    log_format = (log_format or os.environ.get(_FORMAT_ENV) or "text").lower()
    if log_format not in ("text", "json"):
        raise click.BadParameter(f"log format must be text or json, got {log_format!r}")
    if chosen is not None:
        os.environ[_FORMAT_ENV] = log_format
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler._fluxon = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    ours = [handler for handler in root.handlers if getattr(handler, "_fluxon", False)]
    if not ours:
        return
    root.setLevel(level)
    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in ours:
        handler.setFormatter(formatter)


def json_logs() -> bool:
    """True when this process logs JSON lines (then a command prints nothing but log lines)."""
    return os.environ.get(_FORMAT_ENV, "").lower() == "json"


def log_options(function: F) -> F:
    """``--log-format text|json``, for the ``fluxon`` group (so it is on every command)."""
    return click.option("--log-format", type=click.Choice(["text", "json"], case_sensitive=False),
                        default=None, envvar=_FORMAT_ENV, show_envvar=True,
                        help="Log lines as text (default) or one JSON object per line.")(function)


def log_format_parameter() -> click.Option:
    """The same ``--log-format`` for a sub-command (``fluxon broker --log-format json`` works too)."""
    def apply(context: click.Context, param: click.Parameter, value: str | None) -> None:
        if value:
            configure_logging(logging.getLogger().level or logging.INFO, value)
    return click.Option(["--log-format"], type=click.Choice(["text", "json"], case_sensitive=False),
                        default=None, expose_value=False, callback=apply,
                        help="Log lines as text or one JSON object per line (also before the command).")


def slow_request_option(function: F) -> F:
    """``--slow-request-ms N`` for the commands that serve requests (broker, worker, run)."""
    return click.option("--slow-request-ms", type=click.IntRange(min=0), default=None,
                        help="Log every request that takes N ms or more, with its timings "
                             "(0 logs every request).")(function)


def log_slow_request(logger: logging.Logger, job: Any, worker: str, outcome: str, run_s: float) -> None:
    """The broker's line about one slow request: queued (arrival to dispatch) and run times."""
    queued_ms = round((job.dispatched_at - job.received_at) * 1000, 3)
    run_ms = round(run_s * 1000, 3)
    logger.warning("slow request %d %r: %s after %.1f ms (queued %.1f ms, worker %.1f ms)", job.job_id,
                   job.route, outcome, queued_ms + run_ms, queued_ms, run_ms,
                   extra={"request_id": job.job_id, "route": job.route, "worker": worker, "outcome": outcome,
                          "queued_ms": queued_ms, "run_ms": run_ms, "total_ms": round(queued_ms + run_ms, 3)})
