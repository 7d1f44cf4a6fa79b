"""How the console prints a broker's answers: aligned key/value lines and plain-text tables.

The control socket answers with plain data (dicts, lists of row dicts, scalars); these
functions turn any such shape into text for a terminal, clipping long cells to one line.
``--json`` bypasses them and prints the full answer::

    >>> print(render_table([{"id": "ab12", "served": 7}, {"id": "cd34", "served": 9}]))
    ID    SERVED
    ab12  7
    cd34  9
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["render_value", "render_mapping", "render_table", "render_status", "render_rows",
           "render_sessions"]

_MAX_CELL_CHARS = 48


def render_value(data: Any) -> str:
    """A readable rendering of any plain-data answer: mappings as aligned key/value lines,
    lists of mappings as tables, everything else as text."""
    if isinstance(data, Mapping):
        return render_mapping(data)
    if isinstance(data, list) and data and all(isinstance(row, Mapping) for row in data):
        return render_table(data)
    if isinstance(data, list):
        return "\n".join(_cell(item) for item in data) if data else "(none)"
    return _cell(data)


def render_mapping(data: Mapping[str, Any]) -> str:
    """Aligned ``key  value`` lines; nested lists of rows become indented tables."""
    if not data:
        return "(empty)"
    width = max(len(str(key)) for key in data)
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(row, Mapping) for row in value):
            lines.append(f"{key}:")
            lines.extend("  " + line for line in render_table(value).splitlines())
        elif isinstance(value, list) and value and len(", ".join(map(_cell, value))) > 60:
            lines.append(f"{key}:")
            lines.extend(f"  - {_cell(item)}" for item in value)
        elif isinstance(value, Mapping) and value and any(
                isinstance(v, (Mapping, list)) for v in value.values()):
            lines.append(f"{key}:")
            lines.extend("  " + line for line in render_mapping(value).splitlines())
        else:
            lines.append(f"{str(key).ljust(width)}  {_cell(value)}")
    return "\n".join(lines)


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table with one header line; columns default to the keys in first-seen order."""
    if not rows:
        return "(none)"
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(str(key) for key in row))
        columns = list(seen)
    cells = [[_clip(_cell(row.get(col))) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    header = "  ".join(col.upper().ljust(w) for col, w in zip(columns, widths))
    body = ["  ".join(value.ljust(w) for value, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join([header.rstrip(), *body])


def _clip(text: str, width: int = _MAX_CELL_CHARS) -> str:
    """One table cell on one line, at most ``width`` characters (``--json`` has it in full)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def render_status(data: Mapping[str, Any]) -> str:
    """The ``status`` answer (``Broker.status``), with the uptime as a duration."""
    return render_mapping({**data, "uptime_s": _duration(float(data["uptime_s"]))})


def render_rows(key: str) -> Callable[[Any], str]:
    """Render an answer that is either a list of rows or a mapping holding one under ``key``."""
    def render(data: Any) -> str:
        if isinstance(data, Mapping) and isinstance(data.get(key), list):
            rest = {k: v for k, v in data.items() if k != key}
            table = render_table(data[key]) if data[key] else f"(no {key})"
            return (render_mapping(rest) + "\n" + table) if rest else table
        return render_value(data)
    return render


def render_sessions(data: Any) -> str:
    """Sessions with readable times and shortened client keys (``--json`` has them in full)."""
    if isinstance(data, Mapping) and isinstance(data.get("sessions"), list):
        rows = [_readable_session(row) for row in data["sessions"] if isinstance(row, Mapping)]
        data = {**data, "sessions": rows}
    return render_rows("sessions")(data)


def _readable_session(row: Mapping[str, Any]) -> dict[str, Any]:
    shown = dict(row)
    for key in ("created_at", "last_seen"):
        if isinstance(shown.get(key), (int, float)):
            shown[key] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(shown[key]))
    key = shown.get("client_key")
    if isinstance(key, str) and len(key) > 12:
        shown["client_key"] = key[:12] + "..."
    return shown


def _duration(seconds: float) -> str:
    """The one uptime format: ``42s``, ``3m12s``, ``1h02m05s``, ``2d 1h02m05s``."""
    minutes, secs = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if not (days or hours or minutes):
        return f"{secs}s"
    if not (days or hours):
        return f"{minutes}m{secs:02d}s"
    text = f"{hours:d}h{minutes:02d}m{secs:02d}s"
    return f"{days}d {text}" if days else text
