"""Jinja templating of task fields: one sandboxed environment, undefined names are errors.

Used when a try renders its templated fields (``runtime._context.render_task``) and by
``BaseOperator.render_template``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from orchestrator.errors import TemplateError

__all__ = ["TEMPLATE_ENV", "render_value"]

TEMPLATE_ENV = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
)


def render_value(
    value: Any,
    context: Mapping[str, Any],
    exts: tuple[str, ...] = (),
    base: Path | None = None,
) -> Any:
    """``value`` rendered with ``context``: strings (a string ending in one of ``exts`` is
    the name of a template file, beside the DAG file in ``base``), in lists, tuples and
    dict values."""
    if isinstance(value, str):
        if exts and value.endswith(exts):
            path = (base / value) if base is not None else Path(value)
            if not path.is_file():
                raise TemplateError(f"template file {value!r} not found (looked in {path})")
            value = path.read_text()
        if "{{" not in value and "{%" not in value:
            return value
        return TEMPLATE_ENV.from_string(value).render(context)
    if isinstance(value, list):
        return [render_value(v, context, exts, base) for v in value]
    if isinstance(value, tuple):
        return tuple(render_value(v, context, exts, base) for v in value)
    if isinstance(value, dict):
        return {k: render_value(v, context, exts, base) for k, v in value.items()}
    return value
