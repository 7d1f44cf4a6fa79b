"""Router, Request and application loading (no sockets needed)."""

from __future__ import annotations

import json
import sys

import pytest

from fluxon.errors import ConfigurationError, RouteNotFound, SerializationError, Unauthorized
from fluxon.routing import Request, Router, load_router, login_required


def view(request):
    return request.payload


def test_mapping_and_decorator_routes_resolve():
    router = Router(mapping={"a": view}, idempotent=["a"])

    @router.route("b", login_required=True)
    def b(request):
        return 2

    assert router.resolve("a").view is view
    assert router.resolve("a").idempotent
    assert router.resolve("b").login_required and not router.resolve("b").idempotent
    assert router.idempotent_routes == ["a"]


def test_unknown_route_raises_route_not_found():
    with pytest.raises(RouteNotFound, match="'nope'"):
        Router().resolve("nope")


@pytest.mark.parametrize("name, target", [("", view), ("x" * 256, view), ("ok", 42)])
def test_bad_routes_are_configuration_errors(name, target):
    with pytest.raises(ConfigurationError):
        Router(mapping={name: target})


def test_route_mapped_twice_is_refused():
    router = Router(mapping={"a": view})
    with pytest.raises(ConfigurationError, match="twice"):
        router.add_route("a", view)


def test_login_required_decorator_marks_route_and_checks():
    router = Router(mapping={"s": login_required(view)})
    assert router.resolve("s").login_required
    with pytest.raises(Unauthorized):
        router.resolve("s").view(Request("s", 1))
    assert router.resolve("s").view(Request("s", 1, user_id=7)) == 1


def test_router_login_required_argument():
    assert Router(mapping={"s": view}, login_required=["s"]).resolve("s").login_required


def test_request_pyload_alias_and_context():
    context = {"sid": "abc", "uid": 3, "data": {"k": 1}, "peer": "1.2.3.4:5",
               "key": "KEY", "trusted": False, "debug": True}
    request = Request.from_context("r", {"x": 1}, context)
    assert request.pyload == request.payload == {"x": 1}
    assert (request.session_id, request.user_id, request.session) == ("abc", 3, {"k": 1})
    assert (request.peer, request.client_key, request.debug) == ("1.2.3.4:5", "KEY", True)
    assert request.session_changes() == b""


def test_login_logout_and_session_edits_are_recorded():
    request = Request("r", session={"a": 1})
    request.login(42)
    request.session["b"] = 2
    assert json.loads(request.session_changes()) == {"login": 42, "data": {"a": 1, "b": 2}}
    request.logout()
    assert request.user_id is None
    assert json.loads(request.session_changes()) == {"logout": True, "data": {"a": 1, "b": 2}}


@pytest.mark.parametrize("bad", [None, 1.5, True, ["x"]])
def test_login_rejects_non_id_values(bad):
    with pytest.raises(ConfigurationError):
        Request("r").login(bad)


def test_session_values_must_be_json():
    request = Request("r")
    request.session["obj"] = object()
    with pytest.raises(SerializationError, match="JSON"):
        request.session_changes()


def test_db_without_database_is_an_actionable_error():
    with pytest.raises(ConfigurationError, match="database_path"):
        Request("r").db


def test_load_router_imports_app(tmp_path, monkeypatch):
    (tmp_path / "myapp_routing_test.py").write_text(
        "from fluxon.routing import Router\nrouter = Router(mapping={'x': print})\nother = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert "x" in load_router("myapp_routing_test:router").routes
    assert "x" in load_router("myapp_routing_test").routes
    with pytest.raises(ConfigurationError, match="not a fluxon.routing.Router"):
        load_router("myapp_routing_test:other")
    with pytest.raises(ConfigurationError, match="no attribute"):
        load_router("myapp_routing_test:missing")


@pytest.mark.parametrize("spec", ["no_such_module_xyz:router", "bad path:router", ":router"])
def test_load_router_failures_are_configuration_errors(spec):
    with pytest.raises(ConfigurationError):
        load_router(spec)
