"""Variable.get from everywhere user code runs: parse time, worker threads, the loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from orchestrator import Variable
from orchestrator._settings import Settings
from orchestrator.dagfiles._loader import load_dags
from orchestrator.errors import NotFound
from orchestrator.resources._variables import write_variable
from orchestrator.store import open_store

TOP_LEVEL = """
from orchestrator import DAG, Variable
from orchestrator.operators import EmptyOperator
with DAG(Variable.get("dag_name")):
    EmptyOperator(task_id="t")
"""


async def _set(settings: Settings, key: str, value: str) -> None:
    async with open_store(settings.db_url) as store:
        await write_variable(store, settings, key, value)


def test_get_at_parse_time_reads_the_store(
    settings: Settings, dag_file: Callable[[str, str], Path]
) -> None:
    """A DAG file may read a Variable at import, with no event loop running."""
    anyio.run(_set, settings, "dag_name", "named_by_variable")
    dag_file("top.py", TOP_LEVEL)
    assert list(load_dags(Path(settings.dags)).dags) == ["named_by_variable"]


async def test_get_from_the_event_loop_thread(settings: Settings) -> None:
    """Sync Variable.get called on the loop thread still answers (through a helper thread)."""
    await _set(settings, "k", json.dumps([1, 2]))
    assert Variable.get("k", deserialize_json=True) == [1, 2]


def test_missing_variable_without_default(settings: Settings) -> None:
    """A missing variable without default raises NotFound naming it."""
    with pytest.raises(NotFound, match="variable 'absent' does not exist"):
        Variable.get("absent")


def test_secret_variable_is_encrypted_at_rest(settings: Settings) -> None:
    """A variable whose key looks secret is stored encrypted and read back in clear."""
    anyio.run(_set, settings, "db_password", "s3cr3t-value")

    async def raw() -> tuple[str, bool] | None:
        async with open_store(settings.db_url) as store:
            return await store.get_variable("db_password")

    stored = anyio.run(raw)
    assert stored is not None
    assert stored[1] is True
    assert "s3cr3t-value" not in stored[0]
    assert Variable.get("db_password") == "s3cr3t-value"
