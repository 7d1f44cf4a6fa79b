"""A budgeted walk over a pickle's opcodes, run before the C unpickler sees untrusted bytes.

A data-only pickle can still take a worker down: a 150 KB payload nested 150,000 deep
overflows the C stack when the unpickler hashes it, a 1 MB payload that references one
big list 200 times through the memo expands to gigabytes once a view walks it, 40,000
integers whose hashes collide make a set insertion quadratic, and a 53-byte Decimal
with a huge exponent hangs the first ``int()`` of it. None of this can be refused
after unpickling, so :func:`scan_pickle` models the unpickler first: it follows the
opcodes with the unpickler's stack, marks and memo, but each value on them is a small
record (its kind, its expanded size, its nesting depth, its element count), never the
value itself. Memo references push the referenced record, so they count at their
expanded size. Past any of the :class:`DecodeLimits` the payload is refused with a
:class:`~fluxon.errors.BadRequest` whose ``details["limit"]`` names the limit.

The walk also decides which constructions a payload may use: REDUCE only on an allowed
global, NEWOBJ and BUILD only for ``uuid.UUID`` (the one plain type that needs them),
APPEND / SETITEM / ADDITEMS only on a list / dict / set, and nothing is added to a
container once it has been placed in another (only a cycle does that, and it would
hide growth from the budgets).

Example::

    >>> scan_pickle(pickle.dumps([[1, 2], {"a": b"x"}]), DecodeLimits())
    >>> scan_pickle(pickle.dumps(nested_10000_deep), DecodeLimits())
    Traceback (most recent call last):
    fluxon.errors.BadRequest: payload nesting exceeds max_depth=1000
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, fields

from fluxon.errors import BadRequest, ConfigurationError

__all__ = ["DecodeLimits", "scan_pickle"]


@dataclass(frozen=True)
class DecodeLimits:
    """Budgets of the restricted decoder (``Router(decode_limits=...)``, ``WorkerConfig.decode_limits``).

    Sizes are estimates of the decoded value with every shared (memo) reference expanded:
    8 bytes per container slot and per number, the length of each string.
    """

    #: Larger payloads are refused before any walk.
    max_payload_bytes: int = 16 * 1024 * 1024
    #: Containers inside containers; deeper values overflow C recursion (hash, repr, compare).
    max_depth: int = 1000
    #: The decoded size may reach max(expansion_floor_bytes, payload bytes x max_expansion).
    max_expansion: int = 64
    expansion_floor_bytes: int = 1024 * 1024
    #: Elements of any one list, tuple, dict, set or frozenset.
    max_container_items: int = 1_000_000
    #: Bytes of one integer (4 KiB is 9,864 decimal digits).
    max_int_bytes: int = 4096
    #: Digits and exponent of a Decimal: int(Decimal("1e1000000")) would run for seconds.
    max_decimal_digits: int = 4300
    max_decimal_exponent: int = 4300
    #: Set members and dict keys whose hash a sender can make collide (large ints, floats,
    #: tuples, frozensets, Decimals, UUIDs, dates); strings, bytes and small ints are exempt.
    max_hashed_keys: int = 4096
    #: Opcodes walked: the total work of one decode.
    max_opcodes: int = 4_000_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"DecodeLimits.{field.name} must be a positive int, got {value!r}")


def _limit(name: str, bound: int, what: str) -> BadRequest:
    return BadRequest(f"payload {what} exceeds {name}={bound}", details={"limit": name, "bound": bound})


def _refuse(message: str) -> BadRequest:
    return BadRequest(message)


# Argument shapes: >= 0 is a fixed size; the negative codes name the others.
_LINE, _LINE_PAIR, _LEN1, _LEN4, _LEN4U, _LEN8U = range(-1, -7, -1)

# Record kinds. Scalars are tuples (kind, size, depth 0, count 0, where a string starts); containers are
# lists [kind, size, depth (1 when empty), count, attached, prone elements, first element].
(_SAFE, _PRONE, _STR, _GLOBAL, _LIST, _DICT, _SET, _TUPLE, _FROZENSET, _OBJ, _NEWOBJ) = range(11)
#: Kinds a sender can give colliding hashes to (see DecodeLimits.max_hashed_keys).
_PRONE_KINDS = frozenset({_PRONE, _TUPLE, _FROZENSET, _OBJ, _NEWOBJ})
_SLOT = 8
_SAFE_ITEM = (_SAFE, _SLOT, 0, 0, None)
_PRONE_ITEM = (_PRONE, _SLOT, 0, 0, None)

# Actions, by opcode name.
(_A_SAFE, _A_FLOAT, _A_INT_TEXT, _A_LONG, _A_STR, _A_BYTES, _A_EMPTY, _A_MARK, _A_FROM_MARK,
 _A_TUPLE_N, _A_APPEND, _A_APPENDS, _A_SETITEM, _A_SETITEMS, _A_ADDITEMS, _A_POP, _A_POP_MARK,
 _A_DUP, _A_MEMOIZE, _A_PUT, _A_GET, _A_GLOBAL, _A_STACK_GLOBAL, _A_REDUCE, _A_NEWOBJ, _A_BUILD,
 _A_SKIP, _A_STOP, _A_REFUSE) = range(29)

_ACTION_BY_NAME = {
    "NONE": _A_SAFE, "NEWTRUE": _A_SAFE, "NEWFALSE": _A_SAFE, "BININT": _A_SAFE, "BININT1": _A_SAFE,
    "BININT2": _A_SAFE, "FLOAT": _A_FLOAT, "BINFLOAT": _A_FLOAT, "INT": _A_INT_TEXT, "LONG": _A_INT_TEXT,
    "LONG1": _A_LONG, "LONG4": _A_LONG,
    "STRING": _A_STR, "BINSTRING": _A_STR, "SHORT_BINSTRING": _A_STR, "UNICODE": _A_STR,
    "BINUNICODE": _A_STR, "SHORT_BINUNICODE": _A_STR, "BINUNICODE8": _A_STR,
    "BINBYTES": _A_BYTES, "SHORT_BINBYTES": _A_BYTES, "BINBYTES8": _A_BYTES, "BYTEARRAY8": _A_BYTES,
    "EMPTY_LIST": _A_EMPTY, "EMPTY_DICT": _A_EMPTY, "EMPTY_SET": _A_EMPTY, "EMPTY_TUPLE": _A_EMPTY,
    "MARK": _A_MARK, "LIST": _A_FROM_MARK, "TUPLE": _A_FROM_MARK, "DICT": _A_FROM_MARK,
    "FROZENSET": _A_FROM_MARK, "TUPLE1": _A_TUPLE_N, "TUPLE2": _A_TUPLE_N, "TUPLE3": _A_TUPLE_N,
    "APPEND": _A_APPEND, "APPENDS": _A_APPENDS, "SETITEM": _A_SETITEM, "SETITEMS": _A_SETITEMS,
    "ADDITEMS": _A_ADDITEMS, "POP": _A_POP, "POP_MARK": _A_POP_MARK, "DUP": _A_DUP,
    "MEMOIZE": _A_MEMOIZE, "PUT": _A_PUT, "BINPUT": _A_PUT, "LONG_BINPUT": _A_PUT,
    "GET": _A_GET, "BINGET": _A_GET, "LONG_BINGET": _A_GET,
    "GLOBAL": _A_GLOBAL, "STACK_GLOBAL": _A_STACK_GLOBAL, "REDUCE": _A_REDUCE, "NEWOBJ": _A_NEWOBJ,
    "BUILD": _A_BUILD, "PROTO": _A_SKIP, "FRAME": _A_SKIP, "STOP": _A_STOP,
    # INST/OBJ/NEWOBJ_EX, the extension registry, persistent ids and out-of-band buffers:
    # no plain data type needs them.
}

#: What the container opcodes build.
_BUILDS = {"EMPTY_LIST": _LIST, "EMPTY_DICT": _DICT, "EMPTY_SET": _SET, "EMPTY_TUPLE": _TUPLE,
           "LIST": _LIST, "TUPLE": _TUPLE, "DICT": _DICT, "FROZENSET": _FROZENSET,
           "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}

#: What REDUCE of an allowed global builds; anything else allowed builds an opaque object.
_REDUCE_BUILDS = {("builtins", "list"): _LIST, ("builtins", "dict"): _DICT, ("builtins", "set"): _SET,
                  ("builtins", "frozenset"): _FROZENSET, ("builtins", "tuple"): _TUPLE}
_HASHING_KINDS = frozenset({_DICT, _SET, _FROZENSET})
#: The only class NEWOBJ (and then BUILD) may construct.
_NEWOBJ_CLASSES = frozenset({("uuid", "UUID")})
_TEXT_MEMO_OPCODES = frozenset({ord(pickletools.code2op["p"].code), ord(pickletools.code2op["g"].code)})
#: STACK_GLOBAL names a global with two strings; longer ones cannot name an allowed global.
_KEPT_TEXT_BYTES = 64


def _opcode_tables() -> tuple[list[int], list[int], list[int]]:
    """Three 256-entry tables, opcode byte -> argument shape, action, and what it builds."""
    prefixed = {pickletools.TAKEN_FROM_ARGUMENT1: _LEN1, pickletools.TAKEN_FROM_ARGUMENT4: _LEN4,
                pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4U, pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8U}
    shapes, actions, builds = [0] * 256, [_A_REFUSE] * 256, [0] * 256
    for op in pickletools.opcodes:
        code, arg = ord(op.code), op.arg
        if arg is None:
            shape = 0
        elif arg.n >= 0:
            shape = arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            shape = _LINE_PAIR if arg.name.endswith("_pair") else _LINE
        else:
            shape = prefixed[arg.n]
        shapes[code] = shape
        actions[code] = _ACTION_BY_NAME.get(op.name, _A_REFUSE)
        builds[code] = _BUILDS.get(op.name, 0)
    return shapes, actions, builds


_SHAPES, _ACTIONS, _BUILT = _opcode_tables()


def _allowed_global(module: str, name: str, allowed: frozenset[tuple[str, str]]) -> tuple:
    if (module, name) not in allowed:
        raise BadRequest(f"payload refers to a forbidden global: {module}.{name}",
                         details={"global": f"{module}.{name}"})
    return (_GLOBAL, 0, 0, 0, (module, name))


class _Walk:
    """The state of one walk; :meth:`add` is where every budget on containers is kept."""

    __slots__ = ("budget", "max_items", "max_depth", "max_hashed", "hashed")

    def __init__(self, budget: int, limits: DecodeLimits) -> None:
        self.budget = budget
        self.max_items = limits.max_container_items
        self.max_depth = limits.max_depth
        self.max_hashed = limits.max_hashed_keys
        self.hashed = 0

    def add(self, container: list, items: list, values: list | None = None) -> None:
        """Account for ``items`` placed in ``container`` (with ``values``: dict keys and their values).

        Works on a whole batch (an APPENDS, SETITEMS or ADDITEMS of up to a thousand
        records) with list-level builtins: a list of small ints or None is one
        ``list.count`` of the shared scalar record.
        """
        if container[4]:
            raise _refuse("payload adds to a container after placing it in another (a cycle); "
                          "cyclic values are not accepted")
        count = len(items)
        placed = items if values is None else items + values
        if placed.count(_SAFE_ITEM) == len(placed):
            size, depth, prone = _SLOT * 2 * len(placed), 0, 0
        else:
            size = sum([item[1] for item in placed]) + _SLOT * len(placed)
            depth = max([item[2] for item in placed])
            prone = len([item for item in items if item[0] in _PRONE_KINDS])
            for item in placed:
                if type(item) is list:
                    item[4] = True
        size = container[1] = container[1] + size
        if size > self.budget:
            raise _limit("max_expansion", self.budget, "decodes to more than its budget: the decoded size")
        count = container[3] = container[3] + count
        if count > self.max_items:
            raise _limit("max_container_items", self.max_items, "has a container whose element count")
        if depth >= container[2]:
            if depth >= self.max_depth:
                raise _limit("max_depth", self.max_depth, "nesting")
            container[2] = depth + 1
        if prone:
            container[5] += prone
            if container[0] in _HASHING_KINDS:
                self.hash_keys(prone)

    def hash_keys(self, count: int) -> None:
        """Count ``count`` more collidable keys hashed into a set or dict."""
        self.hashed += count
        if self.hashed > self.max_hashed:
            raise _limit("max_hashed_keys", self.max_hashed,
                         "hashes too many keys of collidable types (large ints, floats, tuples...): the count")

    def new(self, kind: int, items: list) -> list:
        """A container of ``kind`` holding ``items`` (LIST, TUPLE, FROZENSET, DICT, TUPLE1..3)."""
        record = [kind, 56, 1, 0, False, 0, items[0] if items else None]
        if kind == _DICT:
            self.set_items(record, items)
        elif items:
            self.add(record, items)
        return record

    def set_items(self, record: list, items: list) -> None:
        """SETITEM(S): ``items`` alternate keys and values."""
        if record[0] != _DICT:
            raise _refuse("payload sets items on something that is not a dict")
        if len(items) % 2:
            raise _refuse("undecodable payload: odd number of items for a dict")
        if items:
            self.add(record, items[0::2], items[1::2])

    def reduce(self, func: tuple | list, args: tuple | list) -> list:
        if func[0] != _GLOBAL:
            raise _refuse("payload calls something that is not an allowed global (REDUCE)")
        if args[0] != _TUPLE:
            raise _refuse("undecodable payload: REDUCE arguments are not a tuple")
        kind = _REDUCE_BUILDS.get(func[4], _OBJ)
        first = args[6]
        count = first[3] if type(first) is list else 0
        if kind in _HASHING_KINDS and type(first) is list:
            self.hash_keys(first[5])
        args[4] = True
        return [kind, args[1], args[2], count, False, 0, None]


def _refuse_opcode(code: int) -> BadRequest:
    return _refuse(f"payload uses a forbidden or unknown pickle opcode 0x{code:02x}")


def scan_pickle(data: bytes | memoryview, limits: DecodeLimits,
                allowed: frozenset[tuple[str, str]] = frozenset()) -> None:
    """Walk ``data``'s opcodes within ``limits``; raise :class:`BadRequest` naming the first one exceeded.

    Returns quietly for a payload within every budget. A truncated or malformed pickle is
    left for the unpickler to report, except where walking it would mean guessing.
    ``allowed`` is the set of globals (module, name) the payload may refer to.
    """
    end = len(data)
    if end > limits.max_payload_bytes:
        raise _limit("max_payload_bytes", limits.max_payload_bytes, f"of {end} bytes: its size")
    walk = _Walk(max(limits.expansion_floor_bytes, end * limits.max_expansion), limits)
    try:
        _walk(data, end, walk, limits, allowed)
    except (IndexError, KeyError, TypeError, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"undecodable payload: malformed pickle ({type(exc).__name__})") from None


def _walk(data: bytes | memoryview, end: int, walk: _Walk, limits: DecodeLimits,
          allowed: frozenset[tuple[str, str]]) -> None:
    """The opcode loop of :func:`scan_pickle`; the frequent steps are inline, the rest below."""
    shapes, actions, built = _SHAPES, _ACTIONS, _BUILT
    stack: list = []
    marks: list[int] = []
    memo: dict[int, tuple | list] = {}
    add = walk.add
    max_ops, max_int = limits.max_opcodes, limits.max_int_bytes
    pos = ops = 0
    while True:
        code = data[pos]
        shape, action = shapes[code], actions[code]
        ops += 1
        if ops > max_ops:
            raise _limit("max_opcodes", max_ops, "work (pickle opcodes)")
        start = pos + 1
        if shape >= 0:
            pos = start + shape
        elif shape == _LEN1:
            start += 1
            pos = start + data[start - 1]
        elif shape == _LINE or shape == _LINE_PAIR:
            pos = data.index(b"\n", start) + 1
            if shape == _LINE_PAIR:
                pos = data.index(b"\n", pos) + 1
        else:
            width = 8 if shape == _LEN8U else 4
            length = int.from_bytes(data[start:start + width], "little", signed=shape == _LEN4)
            if length < 0:
                raise _refuse("undecodable payload: negative length")
            start += width
            pos = start + length
        if pos > end:
            raise _refuse("undecodable payload: truncated pickle")
        if action == _A_SAFE:
            stack.append(_SAFE_ITEM)
        elif action == _A_MEMOIZE:
            memo[len(memo)] = stack[-1]
        elif action == _A_STR:
            length = pos - start
            stack.append((_STR, length, 0, 0, start))
        elif action == _A_GET:
            stack.append(memo[data[start] if shape == 1 else _memo_index(data, code, start, pos)])
        elif action == _A_MARK:
            marks.append(len(stack))
        elif action == _A_APPENDS or action == _A_SETITEMS or action == _A_ADDITEMS:
            fence = marks.pop()
            items = stack[fence:]
            del stack[fence:]
            target = stack[-1]
            if action == _A_SETITEMS:
                walk.set_items(target, items)
            elif target[0] != (_LIST if action == _A_APPENDS else _SET):
                raise _refuse("payload appends or adds to something that is not a list or a set")
            elif items:
                add(target, items)
        elif action == _A_EMPTY:
            stack.append([built[code], 56, 1, 0, False, 0, None])
        elif action != _A_SKIP:
            _rare(action, code, data, start, pos, stack, marks, memo, walk, max_int, allowed)
            if action == _A_STOP:
                return


def _memo_index(data: bytes | memoryview, code: int, start: int, pos: int) -> int:
    if code not in _TEXT_MEMO_OPCODES:  # BINGET, LONG_BINGET, BINPUT, LONG_BINPUT: little-endian
        return int.from_bytes(data[start:pos], "little")
    text = bytes(data[start:pos - 1]).strip()  # PUT / GET: a decimal line
    if not text.isdigit():
        raise _refuse("payload uses a malformed memo index")
    return int(text)


def _short_text(data: bytes | memoryview, record: tuple | list) -> str:
    """The text of a string record (its value starts at ``record[4]`` in ``data``)."""
    if record[0] != _STR or record[1] > _KEPT_TEXT_BYTES:
        raise _refuse("payload names a global with something that is not a short string")
    return bytes(data[record[4]:record[4] + record[1]]).decode("utf-8")


def _pop(stack: list, marks: list[int], count: int) -> list:
    """The top ``count`` records, which must lie above the innermost mark."""
    fence = marks[-1] if marks else 0
    if len(stack) - count < fence:
        raise _refuse("undecodable payload: unpickling stack underflow")
    items = stack[len(stack) - count:]
    del stack[len(stack) - count:]
    return items


def _rare(action: int, code: int, data: bytes | memoryview, start: int, pos: int, stack: list,
          marks: list[int], memo: dict, walk: _Walk, max_int: int,
          allowed: frozenset[tuple[str, str]]) -> None:
    """The opcodes :func:`_walk` does not handle inline."""
    if action == _A_APPEND:
        (item,) = _pop(stack, marks, 1)
        if stack[-1][0] != _LIST:
            raise _refuse("payload appends to something that is not a list")
        walk.add(stack[-1], [item])
    elif action == _A_SETITEM:
        items = _pop(stack, marks, 2)
        walk.set_items(stack[-1], items)
    elif action == _A_TUPLE_N:
        stack.append(walk.new(_TUPLE, _pop(stack, marks, _BUILT[code])))
    elif action == _A_FROM_MARK:
        fence = marks.pop()
        items = stack[fence:]
        del stack[fence:]
        kind = _BUILT[code]
        stack.append(walk.new(kind, items))
    elif action == _A_PUT:
        index = _memo_index(data, code, start, pos)
        if index > pos:  # the C unpickler grows its memo to twice the largest index and zeroes it
            raise _refuse("payload uses an out-of-sequence memo index")
        memo[index] = stack[-1]
    elif action == _A_FLOAT:
        stack.append(_PRONE_ITEM)
    elif action == _A_LONG:
        if pos - start > max_int:
            raise _limit("max_int_bytes", max_int, f"has an integer of {pos - start} bytes: its size")
        stack.append(_PRONE_ITEM if pos - start >= 8 else _SAFE_ITEM)
    elif action == _A_INT_TEXT:
        if pos - start > 2 * max_int:
            raise _limit("max_int_bytes", max_int, "has an integer whose size")
        stack.append(_PRONE_ITEM)
    elif action == _A_BYTES:
        stack.append((_SAFE, pos - start, 0, 0, None))
    elif action == _A_POP:
        if len(stack) > (marks[-1] if marks else 0):
            stack.pop()
        else:
            marks.pop()
    elif action == _A_POP_MARK:
        del stack[marks.pop():]
    elif action == _A_DUP:
        stack.append(stack[-1])
    elif action == _A_GLOBAL:
        module, name = bytes(data[start:pos - 1]).decode("utf-8").split("\n")
        stack.append(_allowed_global(module, name, allowed))
    elif action == _A_STACK_GLOBAL:
        module, name = (_short_text(data, record) for record in _pop(stack, marks, 2))
        stack.append(_allowed_global(module, name, allowed))
    elif action == _A_REDUCE:
        func, args = _pop(stack, marks, 2)
        stack.append(walk.reduce(func, args))
    elif action == _A_NEWOBJ:
        cls, args = _pop(stack, marks, 2)
        if cls[0] != _GLOBAL or cls[4] not in _NEWOBJ_CLASSES or args[0] != _TUPLE:
            raise _refuse("payload constructs an object with NEWOBJ that no plain data type needs")
        stack.append([_NEWOBJ, args[1] + 56, args[2], 0, False, 0, None])
    elif action == _A_BUILD:
        (state,) = _pop(stack, marks, 1)
        target = stack[-1]
        if target[0] != _NEWOBJ or target[3]:
            raise _refuse("payload sets the state (BUILD) of something that is not a new UUID")
        walk.add(target, [state])
    elif action == _A_STOP:
        (result,) = _pop(stack, marks, 1)
        if result[1] > walk.budget:
            raise _limit("max_expansion", walk.budget, "decodes to more than its budget: the decoded size")
    else:
        raise _refuse_opcode(code)
