"""The built-in operators."""

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.operators._bash import BashOperator
from orchestrator.operators._branching import (
    BranchDayOfWeekOperator,
    LatestOnlyOperator,
    WeekDay,
)
from orchestrator.operators._misc import EmailOperator, EmptyOperator, TriggerDagRunOperator
from orchestrator.operators._python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)

__all__ = [
    "BaseOperator",
    "BashOperator",
    "BranchDayOfWeekOperator",
    "BranchPythonOperator",
    "EmailOperator",
    "EmptyOperator",
    "LatestOnlyOperator",
    "PythonOperator",
    "ShortCircuitOperator",
    "TriggerDagRunOperator",
    "WeekDay",
]
