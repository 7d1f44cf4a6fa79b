"""Fixtures shared by every test module (see tests/support.py for the helpers)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import ProcessGroup, process_group  # noqa: E402


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start processes with ``procs.start(argv)``; all are killed by PID when the test ends."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    with process_group(log_dir) as group:
        yield group
