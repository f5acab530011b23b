"""Orchestrator: an async, event-driven workflow orchestrator with Airflow's authoring API."""

from orchestrator.alerts import BaseNotifier, DeadlineAlert, DeadlineReference, Webhook
from orchestrator.authoring._baseoperator import BaseOperator, XComArg, chain, cross_downstream
from orchestrator.authoring._dag import DAG
from orchestrator.authoring._edges import Label
from orchestrator.authoring._param import Param
from orchestrator.authoring._taskflow import dag, get_current_context, setup, task, teardown
from orchestrator.authoring._taskgroup import TaskGroup, task_group
from orchestrator.core._state import RunState, TaskState, TriggerRule
from orchestrator.errors import FailTask, SkipTask
from orchestrator.resources._connections import Connection
from orchestrator.resources._hooks import BaseHook
from orchestrator.resources._variables import Variable
from triggers import (
    Asset,
    AssetAll,
    AssetAny,
    AssetOrTimeSchedule,
    Cron,
    CronTriggerTimetable,
    Dataset,
    DatasetAll,
    DatasetAndTime,
    DatasetAny,
    DatasetOrTime,
    EventPattern,
)

__all__ = [
    "DAG",
    "Asset",
    "AssetAll",
    "AssetAny",
    "AssetOrTimeSchedule",
    "BaseHook",
    "BaseNotifier",
    "BaseOperator",
    "Connection",
    "Cron",
    "CronTriggerTimetable",
    "Dataset",
    "DatasetAll",
    "DatasetAndTime",
    "DatasetAny",
    "DatasetOrTime",
    "DeadlineAlert",
    "DeadlineReference",
    "EventPattern",
    "FailTask",
    "Label",
    "Param",
    "RunState",
    "SkipTask",
    "TaskGroup",
    "TaskState",
    "TriggerRule",
    "Variable",
    "Webhook",
    "XComArg",
    "chain",
    "cross_downstream",
    "dag",
    "get_current_context",
    "setup",
    "task",
    "task_group",
    "teardown",
]

__version__ = "0.1.0"

import sensors as _sensors  # noqa: F401 - registers @task.sensor
