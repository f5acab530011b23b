"""Setup and teardown tasks, as Airflow's: ``as_setup()``, ``as_teardown(setups=...)``
and ``with teardown:`` (mixed into ``BaseOperator``; ``@setup`` and ``@teardown`` are in
``_taskflow``).

Rules:
1. A teardown's trigger rule is ``all_done_setup_success``: it runs once everything
   upstream is done, whatever the work did, when at least one of its setups succeeded
   (all setups skipped: skipped; none succeeded: upstream_failed).
2. A teardown does not decide the run's state (``DAG.run_leaves``) unless it says
   ``on_failure_fail_dagrun=True``.
3. ``with teardown:`` puts the tasks made in the block between the teardown's setups
   and the teardown: the block's first tasks follow the setups, its last ones precede
   the teardown.
"""

from __future__ import annotations

from typing import Any, Self

from orchestrator.core._state import TriggerRule
from orchestrator.errors import DagDefinitionError

__all__ = ["SetupTeardown"]


class SetupTeardown:
    """The setup/teardown side of a task."""

    is_setup: bool = False
    is_teardown: bool = False
    on_failure_fail_dagrun: bool = False

    def as_setup(self) -> Self:
        """Mark the task a setup task."""
        self.is_setup = True
        return self

    def as_teardown(
        self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None
    ) -> Self:
        """Mark the task a teardown of ``setups`` (tasks or task outputs, made setups and
        linked upstream of it)."""
        _make_teardown(self, setups, on_failure_fail_dagrun)
        return self

    def __enter__(self) -> Self:
        _open(self)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        _close(self, failed=exc_type is not None)


def _make_teardown(task: Any, setups: Any, fail_dagrun: bool | None) -> None:
    task.is_teardown = True
    task.trigger_rule = TriggerRule.ALL_DONE_SETUP_SUCCESS
    if fail_dagrun is not None:
        task.on_failure_fail_dagrun = bool(fail_dagrun)
    items = setups if isinstance(setups, list | tuple | set) else [setups]
    for item in items:
        if item is None:
            continue
        if not hasattr(item, "_roots"):
            raise DagDefinitionError(
                f"{task._where}: setups must be tasks or task outputs, got {item!r}"
            )
        for setup in item._roots():
            setup.as_setup()
            setup.set_downstream(task)


def _open(task: Any) -> None:
    if not task.is_teardown or task.dag is None:
        raise DagDefinitionError(
            f"{task._where}: only a teardown task in a DAG opens a `with` block "
            "(use as_teardown() or @teardown)"
        )
    task.__dict__.setdefault("_blocks", []).append(list(task.dag.task_dict))


def _close(task: Any, *, failed: bool) -> None:
    before = set(task._blocks.pop())
    if failed:
        return
    dag = task.dag
    made = [t for tid, t in dag.task_dict.items() if tid not in before and t is not task]
    ids = {t.task_id for t in made}
    setups = [
        dag.task_dict[up] for up in sorted(task.upstream_task_ids) if dag.task_dict[up].is_setup
    ]
    for inner in made:
        if not inner.upstream_task_ids & ids:
            for setup in setups:
                setup.set_downstream(inner)
        if not inner.downstream_task_ids & ids:
            inner.set_downstream(task)
