"""``Param``: a DAG's or a task's parameter with a JSON schema, as Airflow's.

``params={"rows": Param(100, type="integer", minimum=1)}``. Defaults are checked when the
DAG is defined; a trigger's ``conf`` overrides them and is checked before any run is
made (a bad value is refused naming ``conf.<name>``); tasks see the values in
``params``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.errors import DagDefinitionError, InvalidRequest

__all__ = ["NOTSET", "Param", "resolve_params"]


class _NotSet:
    def __repr__(self) -> str:
        return "NOTSET"


NOTSET: Any = _NotSet()


class Param:
    """A value with a JSON schema (``type``, ``minimum``, ``enum``, ``pattern``...)."""

    def __init__(self, default: Any = NOTSET, description: str | None = None, **schema: Any):
        self.value = default
        self.description = description
        self.schema = schema

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit the schema, or None."""
        if value is NOTSET:
            return "required, and given no value"
        if not self.schema:
            return None
        import jsonschema  # only where params are checked

        try:
            jsonschema.validate(value, self.schema)
        except jsonschema.ValidationError as exc:
            return exc.message
        except jsonschema.SchemaError as exc:
            return f"the schema is not valid: {exc.message}"
        return None

    def __repr__(self) -> str:
        return f"Param({self.value!r}, {self.schema!r})"


def check_defaults(params: Mapping[str, Any], where: str) -> None:
    """A Param's default must fit its schema (None and no default are left to the run)."""
    for name, param in params.items():
        if isinstance(param, Param) and param.value is not NOTSET and param.value is not None:
            problem = param.problem(param.value)
            if problem is not None:
                raise DagDefinitionError(f"{where}: params.{name}: default {problem}")


def resolve_params(params: Mapping[str, Any], conf: Mapping[str, Any]) -> dict[str, Any]:
    """The params' values, ``conf`` over the defaults, each Param's checked; InvalidRequest
    naming ``conf.<name>`` (or ``params.<name>`` for a default) otherwise."""
    values: dict[str, Any] = {}
    for name, param in params.items():
        value = conf.get(name, param.value if isinstance(param, Param) else param)
        if isinstance(param, Param):
            problem = param.problem(value)
            if problem is not None:
                field = "conf" if name in conf else "params"
                raise InvalidRequest(f"{field}.{name}: {problem}")
        values[name] = value
    return values
