"""Routes, views and the request a view receives.

A :class:`Router` maps route names to views, as in the seed::

    router = Router(mapping={"signup": views.signup}, private_key=KEY,
                    database_path="app.sqlite3", models=models)

    @router.route("profile", login_required=True)
    def profile(request):
        return {"user": request.user_id}

It also carries the deployment settings a worker needs (private key, database
path or URL and models, schema folder, debug flag). Workers load it by its import path,
``package.module:router`` (see :func:`load_router`).

A view receives a :class:`Request`. Session changes made by the view
(``login``, ``logout``, edits of ``request.session``) are recorded on the request
and returned to the broker, which applies them before the client gets the reply.
"""

from __future__ import annotations

import functools
import importlib
import traceback
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fluxon.errors import ConfigurationError, RouteNotFound, SerializationError, Unauthorized
from fluxon.protocol import MAX_ROUTE_BYTES
from fluxon.serialization import DecodeLimits

__all__ = ["Router", "Route", "Request", "login_required", "load_router"]

View = Callable[["Request"], Any]

_LOGIN_REQUIRED_ATTR = "__fluxon_login_required__"


def login_required(view: View) -> View:
    """Make ``view`` answer :class:`~fluxon.errors.Unauthorized` to anonymous sessions.

    Works for ``def`` and ``async def`` views alike; the router also reads the mark,
    so the check happens before the view is scheduled.
    """
    if inspect.iscoroutinefunction(view):
        @functools.wraps(view)
        async def async_wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            request.require_login()
            return await view(request, *args, **kwargs)
        wrapper: View = async_wrapper
    else:
        @functools.wraps(view)
        def sync_wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            request.require_login()
            return view(request, *args, **kwargs)
        wrapper = sync_wrapper
    setattr(wrapper, _LOGIN_REQUIRED_ATTR, True)
    return wrapper


@dataclass(frozen=True)
class Route:
    """One route: its name, its view and the per-route flags."""

    name: str
    view: View
    login_required: bool = False
    idempotent: bool = False
    #: True for ``async def`` views, which run on the worker's event loop. Computed once: the
    #: worker asks for every request, and ``inspect.iscoroutinefunction`` costs about 0.3 µs.
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.view))


class Router:
    """Route names -> views, plus the settings a worker needs to run them."""

    def __init__(self, mapping: Mapping[str, View] | None = None, *,
                 private_key: str | None = None,
                 database_schema_dir: str | os.PathLike | None = None,
                 database_path: str | os.PathLike | None = None,
                 database_url: str | None = None,
                 database_password_file: str | os.PathLike | None = None,
                 models: Any = None,
                 login_required: Iterable[str] = (),
                 idempotent: Iterable[str] = (),
                 debug: bool = False,
                 decode_limits: DecodeLimits | None = None) -> None:
        self.private_key = private_key
        #: Budgets of the restricted payload decoder (see docs/security.md); ``None``: the defaults.
        self.decode_limits = decode_limits
        self.database_schema_dir = os.fspath(database_schema_dir) if database_schema_dir else None
        self.database_path = os.fspath(database_path) if database_path else None
        self.database_url: str | None = None
        #: a file holding the PostgreSQL password, so that it is in neither the URL nor argv
        self.database_password_file = os.fspath(database_password_file) if database_password_file else None
        if database_url:
            self.use_database_url(database_url)
        self.models = models
        self.debug = debug
        #: Where the application was loaded from (``package.module:router``), set by :func:`load_router`;
        #: workers announce it so `fluxon ctl workers` says which application each one runs.
        self.import_path: str | None = None
        self._routes: dict[str, Route] = {}
        self._login_required = set(login_required)
        self._idempotent = set(idempotent)
        for name, view in (mapping or {}).items():
            self.add_route(name, view)

    def use_database_url(self, url: str) -> None:
        """Point the workers at ``url`` (``postgresql://...``, ``sqlite:///...`` or a path).

        A SQLite URL also sets :attr:`database_path`, so schema snapshots and the session
        store find the file as before. The URL (password included) stays in this process:
        forked workers inherit it, and nothing prints it unmasked.
        """
        from fluxon.database.backends.urls import is_postgres_url, sqlite_path
        if not isinstance(url, str) or not url:
            raise ConfigurationError("database_url must be a non-empty string such as "
                                     "postgresql://app@db-host:5432/app")
        if is_postgres_url(url):
            self.database_url = url
        else:
            self.database_url = None
            self.database_path = sqlite_path(url)

    def __repr__(self) -> str:  # never shows the private key
        return f"<Router routes={sorted(self._routes)!r} debug={self.debug}>"

    def add_route(self, name: str, view: View, *, login_required: bool = False,
                  idempotent: bool = False) -> Route:
        """Map ``name`` to ``view``; a name may be mapped only once."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"route names must be non-empty strings, got {name!r}")
        if len(name.encode("utf-8")) > MAX_ROUTE_BYTES:
            raise ConfigurationError(f"route name {name[:40]!r}... is longer than {MAX_ROUTE_BYTES} bytes")
        if not callable(view):
            raise ConfigurationError(f"the view for route {name!r} is not callable: {view!r}")
        if name in self._routes:
            raise ConfigurationError(f"route {name!r} is mapped twice "
                                     f"({self._routes[name].view!r} and {view!r})")
        route = Route(
            name=name, view=view,
            login_required=(login_required or name in self._login_required
                            or bool(getattr(view, _LOGIN_REQUIRED_ATTR, False))),
            idempotent=idempotent or name in self._idempotent,
        )
        self._routes[name] = route
        return route

    def route(self, name: str, *, login_required: bool = False,
              idempotent: bool = False) -> Callable[[View], View]:
        """Decorator form of :meth:`add_route`; returns the view unchanged."""
        def register(view: View) -> View:
            self.add_route(name, view, login_required=login_required, idempotent=idempotent)
            return view
        return register

    def resolve(self, name: str) -> Route:
        """The route called ``name``; :class:`~fluxon.errors.RouteNotFound` if there is none."""
        try:
            return self._routes[name]
        except KeyError:
            raise RouteNotFound(f"no view is mapped to route {name!r}",
                                details={"route": name}) from None

    @property
    def routes(self) -> dict[str, Route]:
        """A copy of the route table."""
        return dict(self._routes)

    @property
    def idempotent_routes(self) -> list[str]:
        """Names of routes the broker may re-dispatch when a worker dies."""
        return sorted(name for name, route in self._routes.items() if route.idempotent)


class Request:
    """What a view receives: the payload, the route and the caller's session.

    ``login``/``logout`` and edits of :attr:`session` are recorded and sent back to
    the broker with the reply (:meth:`session_changes`).
    """

    __slots__ = ("route", "payload", "peer", "session_id", "user_id", "session", "client_key",
                 "trusted", "debug", "_db", "_change", "_initial_session")

    def __init__(self, route: str, payload: Any = None, *, peer: str = "",
                 session_id: str | None = None, user_id: int | str | None = None,
                 session: dict[str, Any] | None = None, client_key: str = "",
                 trusted: bool = False, debug: bool = False, db: Any = None) -> None:
        self.route = route
        self.payload = payload
        self.peer = peer
        self.session_id = session_id
        self.user_id = user_id
        self.session: dict[str, Any] = dict(session or {})
        self.client_key = client_key
        self.trusted = trusted
        self.debug = debug
        self._db = db
        self._change: dict[str, Any] = {}
        self._initial_session = _session_json(self.session) if self.session else _EMPTY_SESSION

    @classmethod
    def from_context(cls, route: str, payload: Any, context: Mapping[str, Any], db: Any = None) -> "Request":
        """Build a request from the broker's session context (see docs/protocol.md)."""
        data = context.get("data")
        return cls(route, payload, peer=str(context.get("peer") or ""),
                   session_id=context.get("sid"), user_id=context.get("uid"),
                   session=data if isinstance(data, dict) else {},
                   client_key=str(context.get("key") or ""),
                   trusted=bool(context.get("trusted")), debug=bool(context.get("debug")), db=db)

    def __repr__(self) -> str:
        return f"<Request route={self.route!r} user_id={self.user_id!r} peer={self.peer!r}>"

    @property
    def pyload(self) -> Any:
        """The seed's name for :attr:`payload`."""
        return self.payload

    @property
    def db(self) -> Any:
        """The worker's :class:`~fluxon.database.manipulation.SqliteDatabase`."""
        if self._db is None:
            raise ConfigurationError("request.db is not available: give the Router database_path= and "
                                     "models= so the worker opens the database")
        return self._db

    @property
    def is_authenticated(self) -> bool:
        """True when the session is bound to a user."""
        return self.user_id is not None

    def require_login(self) -> None:
        """Raise :class:`~fluxon.errors.Unauthorized` unless the session is logged in."""
        if self.user_id is None:
            raise Unauthorized(f"route {self.route!r} requires a logged-in session")

    def login(self, user_id: int | str) -> None:
        """Bind the session to ``user_id``; the broker rotates the session id and token."""
        if isinstance(user_id, bool) or not isinstance(user_id, (int, str)):
            raise ConfigurationError(f"request.login() takes an int or str user id, got {type(user_id).__name__}")
        self.user_id = user_id
        self._change.pop("logout", None)
        self._change["login"] = user_id

    def logout(self) -> None:
        """Unbind the session from its user; the broker rotates the session id and token."""
        self.user_id = None
        self._change.pop("login", None)
        self._change["logout"] = True

    def session_changes(self) -> bytes:
        """The change JSON for the broker, or ``b""`` when nothing changed.

        Raises :class:`~fluxon.errors.SerializationError` when the session holds a
        value JSON cannot represent.
        """
        change = dict(self._change)
        current = _session_json(self.session) if self.session else _EMPTY_SESSION
        if current != self._initial_session:
            change["data"] = self.session
        if not change:
            return b""
        return json.dumps(change, separators=(",", ":")).encode()


_EMPTY_SESSION = "{}"


def _session_json(session: dict[str, Any]) -> str:
    try:
        return json.dumps(session, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"request.session must hold JSON-serializable values only: {exc}",
                                 details={"type": type(exc).__name__}) from exc


def _where(exc: BaseException) -> str:
    """``file, line N`` of the innermost frame of ``exc`` that is not importlib's own."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else "during import"


def load_router(spec: str) -> Router:
    """Import ``package.module:attribute`` (attribute defaults to ``router``) and return the Router.

    The current directory is put on ``sys.path`` first, as ``python -m`` would.
    """
    module_name, _, attr = spec.partition(":")
    attr = attr or "router"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ConfigurationError(f"invalid application path {spec!r}: expected 'package.module:router'")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:  # one line that names the file and line, not a traceback through click
        raise ConfigurationError(f"cannot load application {spec!r}: {type(exc).__name__}: {exc.msg} "
                                 f"({exc.filename}, line {exc.lineno})") from exc
    except ImportError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigurationError(f"cannot import {module_name!r} for application {spec!r}: {exc}. "
                                     f"Run from the folder that contains it, or set PYTHONPATH") from exc
        raise ConfigurationError(f"cannot load application {spec!r}: {type(exc).__name__}: {exc} "
                                 f"({_where(exc)})") from exc
    except Exception as exc:
        raise ConfigurationError(f"cannot load application {spec!r}: {type(exc).__name__}: {exc} "
                                 f"({_where(exc)})") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r} "
                                     f"(application {spec!r})") from None
    if not isinstance(target, Router):
        raise ConfigurationError(f"{spec!r} is a {type(target).__name__}, not a fluxon.routing.Router")
    target.import_path = f"{module_name}:{attr}"
    return target
