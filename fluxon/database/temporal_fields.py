"""Date, time and datetime fields: ISO-8601 text that sorts as time (datetimes in UTC)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from fluxon.database.fields import Field
from fluxon.database.utc import as_utc

__all__ = ["DateField", "TimeField", "DateTimeField"]


class _TemporalField(Field):
    _type: type = _dt.date

    def __init__(self, *, auto_now: bool = False, auto_now_add: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.auto_now = auto_now
        self.auto_now_add = auto_now_add

    def _parse(self, text: str) -> Any:
        return self._type.fromisoformat(text)

    def to_storage(self, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = self._parse(value)
            except ValueError:
                raise self.fail(value, f"{value[:40]!r} is not an ISO {self._type.__name__}") from None
        if not isinstance(value, self._type) or (self._type is _dt.date
                                                  and isinstance(value, _dt.datetime)):
            raise self.fail(value, f"expects a {self._type.__name__}")
        return self._normalize(value).isoformat()

    def _normalize(self, value: Any) -> Any:
        return value

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        return None if value is None else self._type.fromisoformat(value)


class DateField(_TemporalField):
    sql_type = "DATE"
    _type = _dt.date

    def _now(self) -> Any:
        return _dt.date.today()


class TimeField(_TemporalField):
    sql_type = "TIME"
    _type = _dt.time

    def _now(self) -> Any:
        return _dt.datetime.now().time()


class DateTimeField(_TemporalField):
    """Datetimes as ISO text in UTC (``fluxon.database.utc``): aware values are converted,
    naive ones are taken as UTC, and values come back aware, so order and comparisons are
    right across offsets. ``auto_now``/``auto_now_add`` use the current UTC time."""

    sql_type = "DATETIME"
    _type = _dt.datetime

    def _now(self) -> Any:
        return _dt.datetime.now(_dt.timezone.utc)

    def _normalize(self, value: Any) -> Any:
        return as_utc(value)

    def python_value(self, value: Any) -> Any:  # type: ignore[override]
        return None if value is None else as_utc(_dt.datetime.fromisoformat(value))
