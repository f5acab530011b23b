"""Executors: where a task's try runs."""

from orchestrator.executor._local import (
    LocalExecutor,
    TryRequest,
    TryResult,
    current_context,
)

__all__ = ["LocalExecutor", "TryRequest", "TryResult", "current_context"]
