"""The executor the settings name (``ORCHESTRATOR_EXECUTOR``): local or celery."""

from __future__ import annotations

from orchestrator.resources._services import Services
from orchestrator.runtime._executor import Executor, LocalExecutor

__all__ = ["make_executor"]


def make_executor(services: Services, *, thread_slots: int, driver: str = "") -> Executor:
    """``driver`` tags the tries this daemon sends to workers (its lease, on PostgreSQL)."""
    if services.settings.executor == "celery":
        from orchestrator.runtime._celery import CeleryExecutor

        return CeleryExecutor(services, thread_slots=thread_slots, driver=driver)
    return LocalExecutor(services, thread_slots=thread_slots)
