"""The exception tree of the orchestrator.

::

    OrchestratorError
    ├── DagDefinitionError        a DAG or task is declared wrong (names file, DAG, task, field)
    │   ├── CycleError
    │   └── DuplicateTaskError
    ├── DagImportError            a DAG file could not be imported (carries the traceback)
    ├── ConfigError               a setting is missing or malformed
    ├── InvalidRequest            a request's value is malformed (a run id, conf, date)
    ├── StoreError                the metadata store failed or refused a write
    │   ├── NotFound              a run, task instance, variable... does not exist
    │   ├── Conflict              a write clashes with what is stored (a run id taken)
    │   └── StoreUnavailable      the store cannot be reached now; trying again may work
    ├── IllegalTransition         a state change the state machine does not allow
    ├── XComError                 a value is not JSON or is over the size limit
    ├── TemplateError             a templated field failed to render
    └── TaskSignal                raised by task code to steer its own outcome
        ├── SkipTask              finish the try as ``skipped``
        ├── FailTask              fail now, without retrying
        └── TaskTimeout           the try ran past ``execution_timeout``

Third-party errors (sqlite3, asyncpg, jinja2, croniter) are translated into this tree
where they cross into the orchestrator, chained with ``from exc``.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "CycleError",
    "DagDefinitionError",
    "DagImportError",
    "DuplicateTaskError",
    "FailTask",
    "IllegalTransition",
    "InvalidRequest",
    "NotFound",
    "OrchestratorError",
    "SkipTask",
    "StoreError",
    "StoreUnavailable",
    "TaskSignal",
    "TaskTimeout",
    "TemplateError",
    "XComError",
]


class OrchestratorError(Exception):
    """The root of every error the orchestrator raises on purpose."""


class DagDefinitionError(OrchestratorError, ValueError):
    """A DAG or task is declared wrong; the message names the DAG, task and field."""


class CycleError(DagDefinitionError):
    pass


class DuplicateTaskError(DagDefinitionError):
    pass


class DagImportError(OrchestratorError):
    """A DAG file failed to import; ``traceback`` holds the formatted traceback."""

    def __init__(self, file: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message
        self.traceback = traceback


class ConfigError(OrchestratorError):
    pass


class InvalidRequest(OrchestratorError, ValueError):
    """A request (API, CLI, task code) gives a malformed value; the message names the field."""


class StoreError(OrchestratorError):
    pass


class NotFound(StoreError, LookupError):
    pass


class StoreUnavailable(StoreError):
    """The connection to the store was lost or cannot be made (a server restart)."""


class Conflict(StoreError):
    """A write clashes with what is stored, e.g. a run id that is already taken."""


class DrivenElsewhere(OrchestratorError):
    """A request about a run another daemon drives: that daemon's API answers it."""

    def __init__(self, message: str, api_url: str) -> None:
        super().__init__(message)
        self.api_url = api_url


class IllegalTransition(OrchestratorError):
    pass


class XComError(OrchestratorError, ValueError):
    pass


class TemplateError(OrchestratorError):
    pass


class TaskSignal(OrchestratorError):
    """Base of the exceptions task code raises to choose its own outcome."""


class SkipTask(TaskSignal):
    """Raised inside a task to finish the try as skipped (Airflow's AirflowSkipException)."""


class FailTask(TaskSignal):
    """Raised inside a task to fail it without using the remaining retries."""


class TaskTimeout(TaskSignal):
    """The try ran longer than its ``execution_timeout``."""
