"""The console's text rendering of control answers (the --json path prints them unchanged)."""

from __future__ import annotations

import pytest

from fluxon.console_render import render_sessions, render_status, render_table, render_value


@pytest.mark.parametrize("data, expected", [
    ({"a": 1, "long_key": None}, "a         1\nlong_key  -"),
    ({"flag": True, "rate": 3.14159}, "flag  yes\nrate  3.14"),
    ([], "(none)"),
    ({}, "(empty)"),
    ({"errors": {"timeout": 2, "unauthorized": 1}}, "errors  timeout=2, unauthorized=1"),
    ({"plan": ["create table Classroom", "add column User.nickname", "create index on Course"]},
     "plan:\n  - create table Classroom\n  - add column User.nickname\n  - create index on Course"),
    ([{"id": "a", "n": 1}, {"id": "bb", "m": 2}], "ID  N  M\na   1  -\nbb  -  2"),
])
def test_render_value(data, expected):
    assert render_value(data) == expected


def test_table_cells_are_clipped_to_one_line():
    table = render_table([{"app": "x" * 100 + "\nsecond line"}])
    line = table.splitlines()[1]
    assert len(line) == 48 and line.endswith("...") and "second" not in table


def test_status_uptime_and_session_times_are_readable():
    assert render_status({"uptime_s": 3725.0}) == "uptime_s  1h02m05s"
    text = render_sessions({"count": 1, "sessions": [{"sid": "s1", "user_id": 7,
                                                       "client_key": "K" * 40, "created_at": 0.0}]})
    assert "KKKKKKKKKKKK..." in text
    assert "1970-01-01" in text or "1969-12-31" in text  # local time of the epoch
