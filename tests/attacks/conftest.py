"""Fixtures of the attack tests: ``attack_cluster(*broker_args, ...)`` starts a secure cluster."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import AttackCluster, make_attack_cluster  # noqa: E402
from support import ProcessGroup  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder carries the ``attacks`` mark (``-m "not attacks"`` skips them)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.attacks)


@pytest.fixture
def attack_cluster(procs: ProcessGroup, tmp_path: Path) -> Callable[..., AttackCluster]:
    """Call it with broker options (and ``workers=``, ``worker_args=``, ``app=``) to start a cluster.

    Its processes belong to the test's ``procs`` group: all are killed by PID when the test ends.
    """
    def start(*broker_args: str, **kwargs: Any) -> AttackCluster:
        return make_attack_cluster(procs, tmp_path, *broker_args, **kwargs)
    return start
