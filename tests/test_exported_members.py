"""The supported names of each package are pinned: changing them is a decision."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "orchestrator": {
        "DAG",
        "BaseHook",
        "BaseNotifier",
        "DeadlineAlert",
        "DeadlineReference",
        "Webhook",
        "Asset",
        "AssetAll",
        "AssetAny",
        "AssetOrTimeSchedule",
        "DatasetAll",
        "DatasetAny",
        "BaseOperator",
        "Connection",
        "Cron",
        "CronTriggerTimetable",
        "Dataset",
        "DatasetAndTime",
        "DatasetOrTime",
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
        "XComArg",
        "chain",
        "cross_downstream",
        "dag",
        "get_current_context",
        "setup",
        "task",
        "task_group",
        "teardown",
    },
    "orchestrator.alerts": {
        "BaseNotifier",
        "DeadlineAlert",
        "DeadlineReference",
        "EmailNotifier",
        "Webhook",
        "WebhookDeliveryError",
        "WebhookNotifier",
        "sign",
    },
    "orchestrator.operators": {
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
    },
    "orchestrator.errors": {
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
    },
    "triggers": {
        "PRESETS",
        "Asset",
        "AssetAll",
        "AssetAny",
        "AssetOrTimeSchedule",
        "DatasetEvent",
        "normalize_uri",
        "Cron",
        "CronTriggerTimetable",
        "Dataset",
        "DatasetAll",
        "DatasetAndTime",
        "DatasetAny",
        "DatasetCondition",
        "DatasetOrTime",
        "EventPattern",
        "PatternError",
        "PatternSet",
        "Schedule",
        "parse_schedule",
    },
    "sensors": {
        "BaseSensor",
        "BashSensor",
        "DateTimeSensor",
        "DayOfWeekSensor",
        "ExternalTaskSensor",
        "FileSensor",
        "HttpSensor",
        "PokeReturnValue",
        "PythonSensor",
        "S3KeySensor",
        "TimeDeltaSensor",
        "TimeSensor",
    },
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_pinned(module: str) -> None:
    """__all__ lists exactly the supported names, and each of them exists."""
    mod = importlib.import_module(module)
    assert set(mod.__all__) == EXPECTED[module]
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_triggers_names_are_the_same_objects_in_orchestrator() -> None:
    """Cron, Dataset and the combinators import from triggers and from orchestrator alike."""
    import orchestrator
    import triggers

    for name in ("Cron", "Dataset", "DatasetOrTime", "DatasetAndTime", "Asset", "EventPattern"):
        assert getattr(orchestrator, name) is getattr(triggers, name)
    assert triggers.Asset is triggers.Dataset
    assert triggers.AssetAll is triggers.DatasetAll
    assert triggers.AssetAny is triggers.DatasetAny
