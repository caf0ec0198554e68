"""Metadata values made JSON-safe, whatever reader or library produced them."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a metadata value: NaN/inf -> None, dates -> ISO strings,
    numpy/pyarrow scalars -> Python values, bytes -> text."""
    if type(value) in _PLAIN_TYPES:  # the common case, checked first because it is hot
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool | int):  # int subclasses such as IntEnum
        return int(value) if not isinstance(value, bool) else bool(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    as_py = getattr(value, "as_py", None)  # a pyarrow Scalar
    if callable(as_py):
        return jsonable(as_py())
    tolist = getattr(value, "tolist", None)  # a numpy scalar or array
    if callable(tolist):
        return jsonable(tolist())
    return str(value)  # e.g. uuid.UUID from a Parquet extension type
