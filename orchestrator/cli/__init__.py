"""The ``orchestrator`` command."""

from orchestrator.cli._main import main

__all__ = ["main"]
