"""Portable rows: what a pickled model instance becomes where its class cannot be imported.

Model instances pickle as (module, class name, field values); unpickling imports the model
class when it can (a worker, a test) and otherwise builds a :class:`Row` (e.g. on a client
that does not have the application's models).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Row", "rebuild_row"]


class Row(dict):
    """A row whose model class cannot be imported where it was unpickled (e.g. on a client).

    A dict that also allows attribute access, plus ``to_dict()`` and ``model_name``.
    """

    model_name = ""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def __reduce__(self):
        return (_make_row, (self.model_name, dict(self)))


def _make_row(model_name: str, data: dict) -> Row:
    row = Row(data)
    row.model_name = model_name
    return row


def rebuild_row(module: str, qualname: str, data: dict) -> Any:
    """Unpickle a model instance; fall back to :class:`Row` where the model is unknown."""
    try:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        return _make_row(qualname, data)
    if not (isinstance(cls, type) and hasattr(cls, "_meta")):
        return _make_row(qualname, data)
    obj = cls.__new__(cls)
    obj.__dict__.update(data)
    return obj
