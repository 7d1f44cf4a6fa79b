"""Each package's public API is what its ``__init__`` re-exports in ``__all__`` (as httpx checks)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types

import pytest

PACKAGES = ["fluxon", "fluxon.broker", "fluxon.worker", "fluxon.client", "fluxon.database"]
MODULES = ["fluxon.errors", "fluxon.protocol", "fluxon.routing", "fluxon.serialization", "fluxon.keys",
           "fluxon.security", "fluxon.endpoint", "fluxon.connect", "fluxon.console",
           "fluxon.database.models", "fluxon.database.manipulation", "fluxon.database.schema"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_exports_exactly_its_public_names(name: str) -> None:
    package = importlib.import_module(name)
    public = {member for member, value in vars(package).items()
              if not member.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(package.__all__) == public | ({"__version__"} & set(package.__all__))


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [member for member in module.__all__ if not hasattr(module, member)]
    assert missing == []
    assert len(module.__all__) == len(set(module.__all__))


def test_role_packages_are_installed_only_under_fluxon(tmp_path) -> None:
    """broker/, worker/, client/ are fluxon.broker etc.; a user's own client.py must not be shadowed."""
    probe = ("import importlib.util, fluxon.broker, fluxon.worker, fluxon.client\n"
             "print([r for r in ('broker', 'worker', 'client') if importlib.util.find_spec(r)])")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
