"""Notifiers: what happens beside a task or run when it fails, retries or succeeds."""

from orchestrator.alerts._callbacks import run_callback

__all__ = ["run_callback"]
