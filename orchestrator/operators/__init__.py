"""The built-in operators."""

from orchestrator.authoring._baseoperator import BaseOperator
from orchestrator.operators._bash import BashOperator
from orchestrator.operators._misc import EmailOperator, EmptyOperator, TriggerDagRunOperator
from orchestrator.operators._python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)

__all__ = [
    "BaseOperator",
    "BashOperator",
    "BranchPythonOperator",
    "EmailOperator",
    "EmptyOperator",
    "PythonOperator",
    "ShortCircuitOperator",
    "TriggerDagRunOperator",
]
