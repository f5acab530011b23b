"""Orchestrator: an async, event-driven workflow orchestrator with Airflow's authoring API."""

from orchestrator._baseoperator import BaseOperator, XComArg, chain, cross_downstream
from orchestrator._connections import Connection
from orchestrator._taskflow import dag, get_current_context, task
from orchestrator._variables import Variable
from orchestrator.dag import DAG
from orchestrator.errors import FailTask, SkipTask
from orchestrator.state import RunState, TaskState, TriggerRule
from triggers import Cron, Dataset, DatasetAndTime, DatasetOrTime

__all__ = [
    "DAG",
    "BaseOperator",
    "Connection",
    "Cron",
    "Dataset",
    "DatasetAndTime",
    "DatasetOrTime",
    "FailTask",
    "RunState",
    "SkipTask",
    "TaskState",
    "TriggerRule",
    "Variable",
    "XComArg",
    "chain",
    "cross_downstream",
    "dag",
    "get_current_context",
    "task",
]

__version__ = "0.1.0"
