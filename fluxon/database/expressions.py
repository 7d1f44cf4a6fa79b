"""Query expression trees and the compiler that turns them into SQL text plus parameters.

Operators on columns build nodes and evaluate nothing (peewee's style): one small
factory generates the dunder methods. The compiler walks a tree, writes SQL text into
one list and every value into a separate parameter list, so a value can only ever
become ``?``; identifiers come from the model and are quoted and escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "Node", "Expression", "Value", "Negation", "Ordering", "Func", "SQL", "Alias", "Subquery",
    "Exists", "Context", "compile_node", "quote", "where", "Where", "fn",
    "AND", "OR", "EQ", "NE", "LT", "LE", "GT", "GE", "IN", "NOT_IN", "LIKE", "IS", "IS_NOT",
    "BETWEEN",
]

AND, OR = "AND", "OR"
EQ, NE, LT, LE, GT, GE = "=", "!=", "<", "<=", ">", ">="
IN, NOT_IN, LIKE, IS, IS_NOT, BETWEEN = "IN", "NOT IN", "LIKE", "IS", "IS NOT", "BETWEEN"
ADD, SUB, MUL, DIV, MOD, CONCAT = "+", "-", "*", "/", "%", "||"

# Binding strength: a child binding more weakly than its parent needs brackets.
_PRECEDENCE = {
    OR: 1, AND: 2,
    EQ: 4, NE: 4, LT: 4, LE: 4, GT: 4, GE: 4, IN: 4, NOT_IN: 4, LIKE: 4, IS: 4, IS_NOT: 4,
    BETWEEN: 4,
    CONCAT: 5, ADD: 6, SUB: 6, MUL: 7, DIV: 7, MOD: 7,
}
_ASSOCIATIVE = {AND, OR, ADD, MUL, CONCAT}
_NOT_PRECEDENCE = 3


def quote(identifier: str) -> str:
    """Quote an SQL identifier, doubling embedded quotes (identifiers come from models only)."""
    return '"' + identifier.replace('"', '""') + '"'


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _binary(op: str, *, reflected: bool = False):
    """Generate one operator method building ``Expression(self, op, other)``."""
    if reflected:
        def method(self, other):
            return Expression(_as_node(other), op, self)
    else:
        def method(self, other):
            return Expression(self, op, _as_node(other))
    return method


def _as_node(value: Any) -> "Node":
    if isinstance(value, Node):
        return value
    if hasattr(value, "_render_subquery"):
        return Subquery(value)
    return Value(value)


class Node:
    """Anything that can appear in a query; operators build trees and evaluate nothing."""

    __slots__ = ()

    def __eq__(self, other):  # type: ignore[override]
        if other is None:
            return Expression(self, IS, Value(None))
        return Expression(self, EQ, _as_node(other))

    def __ne__(self, other):  # type: ignore[override]
        if other is None:
            return Expression(self, IS_NOT, Value(None))
        return Expression(self, NE, _as_node(other))

    __hash__ = object.__hash__
    __lt__ = _binary(LT)
    __le__ = _binary(LE)
    __gt__ = _binary(GT)
    __ge__ = _binary(GE)
    __and__ = _binary(AND)
    __or__ = _binary(OR)
    __rand__ = _binary(AND, reflected=True)
    __ror__ = _binary(OR, reflected=True)
    __add__ = _binary(ADD)
    __sub__ = _binary(SUB)
    __mul__ = _binary(MUL)
    __truediv__ = _binary(DIV)
    __mod__ = _binary(MOD)
    __radd__ = _binary(ADD, reflected=True)
    __rsub__ = _binary(SUB, reflected=True)
    __rmul__ = _binary(MUL, reflected=True)
    __rtruediv__ = _binary(DIV, reflected=True)

    def __invert__(self) -> "Negation":
        return Negation(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a query expression has no truth value: use & (and), | (or), ~ (not) with brackets, "
            "e.g. (User.age > 3) & (User.name == 'x'), instead of the and/or/not keywords")

    def in_(self, values: Iterable[Any]) -> "Expression":
        """``column IN (...)``: a list (an empty one matches nothing) or a query."""
        return Expression(self, IN, _values_or_subquery(values))

    def not_in(self, values: Iterable[Any]) -> "Expression":
        """``column NOT IN (...)``: a list (an empty one matches everything) or a query."""
        return Expression(self, NOT_IN, _values_or_subquery(values))

    def alias(self, name: str) -> "Alias":
        """``expr AS "name"`` in a select list; rows carry the value under ``name``."""
        return Alias(self, name)

    def like(self, pattern: str) -> "Expression":
        """SQL ``LIKE`` with the caller's own ``%``/``_`` wildcards (``\\`` escapes them)."""
        return Expression(self, LIKE, _Like(pattern))

    def startswith(self, prefix: str) -> "Expression":
        """Values starting with ``prefix`` (wildcards in ``prefix`` match literally)."""
        return Expression(self, LIKE, _Like(_escape_like(str(prefix)) + "%"))

    def endswith(self, suffix: str) -> "Expression":
        """Values ending with ``suffix`` (wildcards in ``suffix`` match literally)."""
        return Expression(self, LIKE, _Like("%" + _escape_like(str(suffix))))

    def contains(self, text: str) -> "Expression":
        """Values containing ``text`` (wildcards in ``text`` match literally)."""
        return Expression(self, LIKE, _Like("%" + _escape_like(str(text)) + "%"))

    def between(self, low: Any, high: Any) -> "Expression":
        """``column BETWEEN low AND high`` (both ends included)."""
        return Expression(self, BETWEEN, _Range(_as_node(low), _as_node(high)))

    def is_null(self, is_null: bool = True) -> "Expression":
        return Expression(self, IS if is_null else IS_NOT, Value(None))

    def asc(self) -> "Ordering":
        return Ordering(self, "ASC")

    def desc(self) -> "Ordering":
        return Ordering(self, "DESC")

    def _sql(self, ctx: "Context") -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be rendered as SQL")

    def _convert_value(self, value: Any) -> Any:
        """How a plain value compared with this node is stored (fields override this)."""
        return value


class Value(Node):
    """A value: always a bound parameter, never SQL text."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def _sql(self, ctx: "Context") -> None:
        if self.value is None:
            ctx.sql.append("NULL")
        else:
            ctx.sql.append("?")
            ctx.params.append(ctx.convert(self.value))


class _ValueList(Node):
    __slots__ = ("values",)

    def __init__(self, values: Iterable[Any]) -> None:
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError("in_()/not_in() take a list, tuple or set of values, not "
                            f"{type(values).__name__}")
        self.values = list(values)

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append("(")
        for index, value in enumerate(self.values):
            if index:
                ctx.sql.append(", ")
            if isinstance(value, Node):
                value._sql(ctx)
            else:
                ctx.sql.append("?")
                ctx.params.append(ctx.convert(value))
        ctx.sql.append(")")


def _values_or_subquery(values: Any) -> Node:
    if hasattr(values, "_render_subquery"):
        return Subquery(values, in_list=True)
    return _ValueList(values)


class Subquery(Node):
    """A query inside another one: ``(SELECT ...)``, its parameters in place.

    ``in_list``: the right side of IN, where a query of whole rows selects its primary key.
    """

    __slots__ = ("query", "in_list")

    def __init__(self, query: Any, *, in_list: bool = False) -> None:
        self.query, self.in_list = query, in_list

    def _sql(self, ctx: "Context") -> None:
        previous, ctx.converter = ctx.converter, None   # inner values follow inner columns
        try:
            ctx.sql.append("(")
            self.query._render_subquery(ctx, self.in_list)
            ctx.sql.append(")")
        finally:
            ctx.converter = previous


class Exists(Node):
    """``EXISTS (SELECT 1 ...)``: an expression in a query, a bool when tested in Python.

    ``if query.exists():`` runs the query; ``where(other.exists())`` nests it.
    """

    __slots__ = ("query",)

    def __init__(self, query: Any) -> None:
        self.query = query

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append("EXISTS ")
        Subquery(self.query.select_one())._sql(ctx)

    def __bool__(self) -> bool:
        return self.query._run_exists()


class Alias(Node):
    """A named column of a select list (``node AS "name"`` there).

    Elsewhere (ORDER BY, HAVING) it renders its expression again, since standard SQL
    does not let HAVING refer to a select-list name.
    """

    __slots__ = ("node", "name")

    def __init__(self, node: Node, name: str) -> None:
        if not isinstance(name, str) or not name or name.startswith("_"):
            raise ValueError(f"an alias is a name not starting with '_', not {name!r}")
        self.node, self.name = node, name

    def _sql(self, ctx: "Context") -> None:
        ctx.render(self.node)


class _Like(Node):
    __slots__ = ("pattern",)

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str):
            raise TypeError("a LIKE pattern must be a string")
        self.pattern = pattern

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append("? ESCAPE '\\'")
        ctx.params.append(self.pattern)


class _Range(Node):
    __slots__ = ("low", "high")

    def __init__(self, low: Node, high: Node) -> None:
        self.low, self.high = low, high

    def _sql(self, ctx: "Context") -> None:
        ctx.render(self.low)
        ctx.sql.append(" AND ")
        ctx.render(self.high)


class Expression(Node):
    """``lhs op rhs``; renders brackets around children that bind more weakly."""

    __slots__ = ("lhs", "op", "rhs")

    def __init__(self, lhs: Node, op: str, rhs: Node) -> None:
        self.lhs, self.op, self.rhs = lhs, op, rhs

    def __bool__(self) -> bool:
        # ``field in [fields]`` and dict lookups compare nodes with ==; answer by identity.
        if self.op in (EQ, IS):
            return self.lhs is self.rhs
        if self.op in (NE, IS_NOT):
            return self.lhs is not self.rhs
        return Node.__bool__(self)

    def _sql(self, ctx: "Context") -> None:
        if self.op in (IN, NOT_IN) and isinstance(self.rhs, _ValueList) and not self.rhs.values:
            # ``x IN ()`` is a syntax error in many databases, and a typed empty subquery
            # must match x's type on PostgreSQL: render the constant truth value instead.
            ctx.sql.append("(1 = 0)" if self.op == IN else "(1 = 1)")
            return
        precedence = _PRECEDENCE[self.op]
        self._child(ctx, self.lhs, precedence)
        ctx.sql.append(f" {self.op} ")
        previous = ctx.converter
        if self.op not in (AND, OR) and isinstance(self.lhs, _Column):
            ctx.converter = self.lhs  # compare values in the column's stored form
        try:
            self._child(ctx, self.rhs, precedence)
        finally:
            ctx.converter = previous

    def _child(self, ctx: "Context", child: Node, precedence: int) -> None:
        if isinstance(child, Expression):
            child_precedence = _PRECEDENCE[child.op]
            same_chain = child.op == self.op and self.op in _ASSOCIATIVE
            bracket = child_precedence < precedence or (child_precedence == precedence and not same_chain)
        else:
            bracket = isinstance(child, Negation) and precedence > _NOT_PRECEDENCE
        if bracket:
            ctx.sql.append("(")
            child._sql(ctx)
            ctx.sql.append(")")
        else:
            ctx.render(child)


class Negation(Node):
    """``NOT (expr)``; the inner expression is always bracketed."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append("NOT (")
        ctx.render(self.node)
        ctx.sql.append(")")


class Ordering(Node):
    """``column ASC|DESC`` for ORDER BY."""

    __slots__ = ("node", "direction")

    def __init__(self, node: Node, direction: str) -> None:
        self.node, self.direction = node, direction

    def _sql(self, ctx: "Context") -> None:
        ctx.render(self.node)
        ctx.sql.append(" " + self.direction)


class Func(Node):
    """An SQL function call over nodes, e.g. ``fn.COUNT(User.id)``."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args: tuple) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"not a function name: {name!r}")
        self.name, self.args = name.upper(), tuple(_as_node(a) for a in args)

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append(self.name + "(")
        for index, arg in enumerate(self.args):
            if index:
                ctx.sql.append(", ")
            ctx.render(arg)
        ctx.sql.append(")")


class _FunctionFactory:
    """``fn.COUNT(x)``, ``fn.LOWER(x)``: SQL functions by attribute name."""

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if name.upper() == "EXISTS":
            return _exists
        return lambda *args: Func(name, args)


def _exists(query: Any) -> Node:
    """``fn.EXISTS(query)``: the same node as ``query.exists()``."""
    if not hasattr(query, "_render_subquery"):
        raise TypeError("fn.EXISTS takes a query, e.g. fn.EXISTS(Course.select().where(...))")
    return Exists(query)


fn = _FunctionFactory()


class SQL(Node):
    """Literal SQL text written by the programmer (never from a request)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def _sql(self, ctx: "Context") -> None:
        ctx.sql.append(self.text)


class _Column(Node):
    """Marker base class for model fields (defined in fields.py)."""

    __slots__ = ()


class Context:
    """Collects SQL text and its parameters while a tree is rendered."""

    __slots__ = ("sql", "params", "qualify", "converter")

    def __init__(self, *, qualify: bool = False) -> None:
        self.sql: list[str] = []
        self.params: list[Any] = []
        self.qualify = qualify
        self.converter: Node | None = None

    def render(self, node: Any) -> "Context":
        if isinstance(node, Node):
            node._sql(self)
        else:
            Value(node)._sql(self)
        return self

    def convert(self, value: Any) -> Any:
        if self.converter is not None:
            return self.converter._convert_value(value)
        return value

    def text(self) -> str:
        return "".join(self.sql)


def compile_node(node: Any, *, qualify: bool = False) -> tuple[str, list[Any]]:
    """Render a tree: ``(sql_text, parameters)``."""
    ctx = Context(qualify=qualify).render(node)
    return ctx.text(), ctx.params


class Where:
    """A filter produced by ``db.where[...]``; wraps one expression."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise TypeError("where[...] takes a query expression such as User.name == 'x'")
        self.node = node

    def __repr__(self) -> str:
        sql, params = compile_node(self.node)
        return f"Where({sql!r}, {params!r})"


class _WhereFactory:
    """``where[expr]`` and ``where(expr)`` make a :class:`Where` (the seed's spelling)."""

    def __getitem__(self, node: Node) -> Where:
        return Where(node)

    def __call__(self, node: Node) -> Where:
        return Where(node)


where = _WhereFactory()
