"""``macros`` in templates and task contexts: Airflow's everyday helpers.

``{{ macros.ds_add(ds, 7) }}``, ``{{ macros.ds_format(ds, "%Y-%m-%d", "%d/%m") }}``,
``{{ macros.datetime(...) }}``, ``{{ macros.timedelta(days=1) }}``, and the modules
Airflow exposes there (``time``, ``uuid``, ``random``, ``json``).
"""

from __future__ import annotations

import datetime as _datetime
import json
import random
import time
import uuid
from types import SimpleNamespace

__all__ = ["MACROS", "ds_add", "ds_format"]


def ds_add(ds: str, days: int) -> str:
    """``ds`` (YYYY-MM-DD) moved by ``days`` days: ``ds_add("2015-01-01", 5)`` is
    ``"2015-01-06"``."""
    day = _datetime.datetime.strptime(ds, "%Y-%m-%d") + _datetime.timedelta(days=days)
    return day.strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """``ds`` read with ``input_format`` and written with ``output_format``."""
    return _datetime.datetime.strptime(str(ds), input_format).strftime(output_format)


MACROS = SimpleNamespace(
    ds_add=ds_add,
    ds_format=ds_format,
    datetime=_datetime.datetime,
    timedelta=_datetime.timedelta,
    time=time,
    uuid=uuid,
    random=random,
    json=json,
)
