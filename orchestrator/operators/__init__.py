"""The built-in operators."""

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.operators._bash import BashOperator
from orchestrator.operators._branching import (
    BranchDateTimeOperator,
    BranchDayOfWeekOperator,
    LatestOnlyOperator,
    WeekDay,
)
from orchestrator.operators._misc import (
    EmailOperator,
    EmptyOperator,
    ExternalTaskMarker,
    TriggerDagRunOperator,
)
from orchestrator.operators._python import (
    BranchPythonOperator,
    Metadata,
    PythonOperator,
    ShortCircuitOperator,
)

__all__ = [
    "BaseOperator",
    "BashOperator",
    "BranchDateTimeOperator",
    "BranchDayOfWeekOperator",
    "BranchPythonOperator",
    "EmailOperator",
    "EmptyOperator",
    "ExternalTaskMarker",
    "LatestOnlyOperator",
    "Metadata",
    "PythonOperator",
    "ShortCircuitOperator",
    "TriggerDagRunOperator",
    "WeekDay",
]
