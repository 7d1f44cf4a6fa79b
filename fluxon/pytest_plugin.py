"""pytest fixtures for Fluxon applications: ``fluxon_server`` and ``fluxon_client``.

Installed as a pytest plugin (entry point ``fluxon`` in ``pytest11``; ``-p fluxon.pytest_plugin``
loads it explicitly where entry points are disabled). It changes nothing until a test asks for
one of its fixtures, which read the application from the ini option ``fluxon_app``::

    # pytest.ini (or [tool.pytest.ini_options] in pyproject.toml)
    [pytest]
    fluxon_app = myapp.router:router

    # test_views.py
    def test_whoami(fluxon_client):
        assert fluxon_client.send_request("whoami") == {"user": None}

Each test gets its own :class:`~fluxon.testing.TestServer` (fresh database, fresh sessions).
A conftest may override ``fluxon_router`` to build the Router another way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fluxon.routing import Router, load_router
from fluxon.testing import TestServer

__all__ = ["fluxon_router", "fluxon_server", "fluxon_client", "pytest_addoption"]

_INI = "fluxon_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``fluxon_app`` ini option (``package.module:router``)."""
    parser.addini(_INI, "The Fluxon application the fluxon_server fixture serves (package.module:router).",
                  default="")


@pytest.fixture
def fluxon_router(request: pytest.FixtureRequest) -> Router:
    """The Router named by the ``fluxon_app`` ini option."""
    app = request.config.getini(_INI)
    if not app:
        raise pytest.UsageError("the fluxon_server fixture needs the ini option fluxon_app = "
                                "package.module:router (or a fluxon_router fixture in conftest.py)")
    return load_router(app)


@pytest.fixture
def fluxon_server(fluxon_router: Router) -> Iterator[TestServer]:
    """A running :class:`~fluxon.testing.TestServer` for the application."""
    with TestServer(fluxon_router) as server:
        yield server


@pytest.fixture
def fluxon_client(fluxon_server: TestServer) -> Any:
    """A blocking client of ``fluxon_server`` (``send_request(route, payload)``)."""
    return fluxon_server.client()
