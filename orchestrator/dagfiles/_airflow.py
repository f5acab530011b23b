"""Airflow's import paths for DAG files written for Airflow (SPEC §8).

``from airflow import DAG``, ``from airflow.operators.bash import BashOperator``... resolve
to this project's objects: a finder at the end of ``sys.meta_path`` answers for
``airflow`` and its submodules listed here. It is installed when a process first loads a
DAG file, and only if Apache Airflow itself cannot be imported: a real installation is
found first and never shadowed (there is no ``airflow`` package on disk).

A module listed here gives only the names listed for it; any other name fails the
import with Python's own "cannot import name" error naming it, and a module not listed
fails naming the module. The DAG loader adds the file and says where the list is.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["AIRFLOW_MODULES", "install_airflow_compat", "is_airflow_name"]

_OPERATORS = {
    "EmptyOperator": "orchestrator.operators:EmptyOperator",
    "BashOperator": "orchestrator.operators:BashOperator",
    "PythonOperator": "orchestrator.operators:PythonOperator",
    "BranchPythonOperator": "orchestrator.operators:BranchPythonOperator",
    "ShortCircuitOperator": "orchestrator.operators:ShortCircuitOperator",
    "EmailOperator": "orchestrator.operators:EmailOperator",
    "TriggerDagRunOperator": "orchestrator.operators:TriggerDagRunOperator",
    "get_current_context": "orchestrator:get_current_context",
}
_SENSORS = {
    "BaseSensorOperator": "sensors:BaseSensor",
    "PokeReturnValue": "sensors:PokeReturnValue",
    "FileSensor": "sensors:FileSensor",
    "DateTimeSensor": "sensors:DateTimeSensor",
    "TimeDeltaSensor": "sensors:TimeDeltaSensor",
    "ExternalTaskSensor": "sensors:ExternalTaskSensor",
    "ExternalTaskMarker": "orchestrator.operators:ExternalTaskMarker",
    "TimeSensor": "sensors:TimeSensor",
    "DayOfWeekSensor": "sensors:DayOfWeekSensor",
    "BashSensor": "sensors:BashSensor",
    "PythonSensor": "sensors:PythonSensor",
}
_DATASETS = {
    "Dataset": "triggers:Dataset",
    "DatasetAll": "triggers:DatasetAll",
    "DatasetAny": "triggers:DatasetAny",
}
_ASSETS = {
    "Asset": "triggers:Asset",
    "AssetAll": "triggers:AssetAll",
    "AssetAny": "triggers:AssetAny",
}
_AUTHORING = {
    "DAG": "orchestrator:DAG",
    "dag": "orchestrator:dag",
    "task": "orchestrator:task",
    "BaseOperator": "orchestrator:BaseOperator",
    "chain": "orchestrator:chain",
    "cross_downstream": "orchestrator:cross_downstream",
    "XComArg": "orchestrator:XComArg",
    "Variable": "orchestrator:Variable",
    "Connection": "orchestrator:Connection",
    "get_current_context": "orchestrator:get_current_context",
    "TaskGroup": "orchestrator:TaskGroup",
    "Label": "orchestrator:Label",
    "Param": "orchestrator:Param",
    "task_group": "orchestrator:task_group",
    "setup": "orchestrator:setup",
    "teardown": "orchestrator:teardown",
    "TriggerRule": "orchestrator:TriggerRule",
    "Context": "orchestrator.dagfiles._airflow:Context",
    "CronTriggerTimetable": "orchestrator:CronTriggerTimetable",
    "AssetOrTimeSchedule": "orchestrator:AssetOrTimeSchedule",
    "BaseNotifier": "orchestrator.alerts:BaseNotifier",
    "BaseHook": "orchestrator:BaseHook",
    "Metadata": "orchestrator.operators:Metadata",
}
_EXCEPTIONS = {
    "AirflowException": "orchestrator.dagfiles._airflow:AirflowException",
    "AirflowSkipException": "orchestrator.errors:SkipTask",
    "AirflowFailException": "orchestrator.errors:FailTask",
    "AirflowSensorTimeout": "orchestrator.dagfiles._airflow:AirflowSensorTimeout",
    "AirflowNotFoundException": "orchestrator.errors:NotFound",
}


def _pick(names: dict[str, str], *wanted: str) -> dict[str, str]:
    return {name: names[name] for name in wanted}


# The standard operators and sensors, at the same place under Airflow 2's paths
# (``airflow.operators.*``, ``airflow.sensors.*``) and Airflow 3's standard provider
# (``airflow.providers.standard.*``).
_STANDARD: dict[str, dict[str, str]] = {
    "operators.empty": _pick(_OPERATORS, "EmptyOperator"),
    "operators.bash": _pick(_OPERATORS, "BashOperator"),
    "operators.python": _pick(
        _OPERATORS,
        "PythonOperator",
        "BranchPythonOperator",
        "ShortCircuitOperator",
        "get_current_context",
    ),
    "operators.trigger_dagrun": _pick(_OPERATORS, "TriggerDagRunOperator"),
    "operators.latest_only": {"LatestOnlyOperator": "orchestrator.operators:LatestOnlyOperator"},
    "operators.weekday": {
        "BranchDayOfWeekOperator": "orchestrator.operators:BranchDayOfWeekOperator"
    },
    "operators.datetime": {
        "BranchDateTimeOperator": "orchestrator.operators:BranchDateTimeOperator"
    },
    "sensors.filesystem": _pick(_SENSORS, "FileSensor"),
    "sensors.date_time": _pick(_SENSORS, "DateTimeSensor"),
    "sensors.time_delta": _pick(_SENSORS, "TimeDeltaSensor"),
    "sensors.external_task": _pick(_SENSORS, "ExternalTaskSensor", "ExternalTaskMarker"),
    "sensors.weekday": _pick(_SENSORS, "DayOfWeekSensor"),
    "sensors.bash": _pick(_SENSORS, "BashSensor"),
    "sensors.python": _pick(_SENSORS, "PythonSensor"),
}


AIRFLOW_MODULES: dict[str, dict[str, str]] = {
    "airflow": {**_pick(_AUTHORING, "DAG", "XComArg"), **_DATASETS},
    "airflow.models": _pick(
        _AUTHORING, "DAG", "BaseOperator", "Variable", "Connection", "XComArg", "Param"
    ),
    "airflow.models.param": _pick(_AUTHORING, "Param"),
    "airflow.models.dag": _pick(_AUTHORING, "DAG"),
    "airflow.models.baseoperator": _pick(_AUTHORING, "BaseOperator", "chain", "cross_downstream"),
    "airflow.models.variable": _pick(_AUTHORING, "Variable"),
    "airflow.models.connection": _pick(_AUTHORING, "Connection"),
    "airflow.models.xcom_arg": _pick(_AUTHORING, "XComArg"),
    "airflow.decorators": {
        **_pick(_AUTHORING, "dag", "task", "task_group", "setup", "teardown"),
        "get_current_context": ("orchestrator:get_current_context"),
    },
    "airflow.sdk": {**_AUTHORING, **_ASSETS, **_pick(_SENSORS, "PokeReturnValue")},
    **{f"airflow.{name}": names for name, names in _STANDARD.items()},
    **{f"airflow.providers.standard.{name}": names for name, names in _STANDARD.items()},
    "airflow.operators.dummy": {"DummyOperator": "orchestrator.operators:EmptyOperator"},
    "airflow.operators.email": _pick(_OPERATORS, "EmailOperator"),
    "airflow.utils.weekday": {"WeekDay": "orchestrator.operators:WeekDay"},
    "airflow.hooks.base": {"BaseHook": "orchestrator:BaseHook"},
    "airflow.providers.smtp.operators.smtp": {"EmailOperator": _OPERATORS["EmailOperator"]},
    "airflow.sensors.base": _pick(_SENSORS, "BaseSensorOperator", "PokeReturnValue"),
    "airflow.sensors.time_sensor": _pick(_SENSORS, "TimeSensor"),
    "airflow.providers.standard.sensors.time": _pick(_SENSORS, "TimeSensor"),
    "airflow.providers.amazon.aws.sensors.s3": {"S3KeySensor": "sensors:S3KeySensor"},
    "airflow.providers.http.sensors.http": {"HttpSensor": "sensors:HttpSensor"},
    "airflow.datasets": _DATASETS,
    "airflow.utils.trigger_rule": {"TriggerRule": "orchestrator:TriggerRule"},
    "airflow.utils.task_group": _pick(_AUTHORING, "TaskGroup"),
    "airflow.utils.edgemodifier": {"Label": "orchestrator:Label"},
    "airflow.utils.state": {
        "State": "orchestrator:TaskState",
        "TaskInstanceState": "orchestrator:TaskState",
        "DagRunState": "orchestrator:RunState",
    },
    "airflow.exceptions": _EXCEPTIONS,
    "airflow.sdk.exceptions": _EXCEPTIONS,
    "airflow.sdk.bases.notifier": _pick(_AUTHORING, "BaseNotifier"),
    "airflow.sdk.bases.operator": _pick(_AUTHORING, "BaseOperator", "chain", "cross_downstream"),
    "airflow.sdk.bases.hook": _pick(_AUTHORING, "BaseHook"),
    "airflow.sdk.definitions.context": _pick(_AUTHORING, "Context", "get_current_context"),
    "airflow.providers.common.compat.sdk": {
        **_pick(
            _AUTHORING,
            "TriggerRule",
            "Context",
            "BaseOperator",
            "BaseHook",
            "BaseNotifier",
            "get_current_context",
            "Variable",
            "Connection",
        ),
        **_pick(_SENSORS, "BaseSensorOperator", "PokeReturnValue"),
        **_EXCEPTIONS,
        "timezone": "orchestrator.dagfiles._airflow:timezone",
    },
    "airflow.utils.timezone": {
        "datetime": "orchestrator.dagfiles._airflow:utc_datetime",
        "utcnow": "orchestrator.dagfiles._airflow:utcnow",
        "utc": "orchestrator.dagfiles._airflow:UTC",
    },
    "airflow.timetables.trigger": _pick(_AUTHORING, "CronTriggerTimetable"),
    "airflow.timetables.interval": {
        "CronDataIntervalTimetable": "orchestrator.dagfiles._airflow:CronDataIntervalTimetable"
    },
    "airflow.timetables.assets": _pick(_AUTHORING, "AssetOrTimeSchedule"),
    "airflow.providers.standard.utils.weekday": {"WeekDay": "orchestrator.operators:WeekDay"},
    "airflow.macros": {
        "ds_add": "orchestrator.resources._macros:ds_add",
        "ds_format": "orchestrator.resources._macros:ds_format",
    },
    "airflow.utils.dates": {"days_ago": "orchestrator.dagfiles._airflow:days_ago"},
    "airflow.notifications.basenotifier": {"BaseNotifier": "orchestrator.alerts:BaseNotifier"},
}
_PACKAGES = {
    ".".join(name.split(".")[:i]) for name in AIRFLOW_MODULES for i in range(1, name.count(".") + 1)
}


class AirflowException(Exception):
    """Airflow's base exception: raised by a task, it fails the try (retries apply)."""


class AirflowSensorTimeout(AirflowException):
    """Raised by a sensor's poke, it fails the try."""


Context = dict[str, Any]  # what a task's code gets (Airflow's ``Context`` type)


def utc_datetime(*args: Any, **kwargs: Any) -> datetime:
    """Airflow's ``timezone.datetime``: a datetime in UTC unless given a ``tzinfo``."""
    kwargs.setdefault("tzinfo", UTC)
    return datetime(*args, **kwargs)


def utcnow() -> datetime:
    return datetime.now(UTC)


timezone = types.SimpleNamespace(datetime=utc_datetime, utcnow=utcnow, utc=UTC)


def CronDataIntervalTimetable(cron: str, timezone: Any = "UTC") -> Any:
    """Airflow's data-interval cron timetable: this project's ``Cron`` schedule."""
    from triggers import Cron

    return Cron(cron, timezone=str(getattr(timezone, "name", timezone)))


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """Airflow 2's ``days_ago``: midnight UTC today (or the given time of day), ``n`` days
    back."""
    today = datetime.now(UTC).replace(hour=hour, minute=minute, second=second, microsecond=0)
    return today - timedelta(days=n)


def is_airflow_name(name: str | None) -> bool:
    return name is not None and (name == "airflow" or name.startswith("airflow."))


class _CompatModule(types.ModuleType):
    """A module of the map: its names are resolved on first use."""

    __names: dict[str, str]

    def __getattr__(self, attr: str) -> Any:
        target = self.__dict__.get("_CompatModule__names", {}).get(attr)
        if target is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        module_name, _, name = target.partition(":")
        value = getattr(importlib.import_module(module_name), name)
        setattr(self, attr, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.__dict__.get("_CompatModule__names", {})})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers for ``airflow`` and its listed submodules (see the module's docstring)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not is_airflow_name(fullname):
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _CompatModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        name = module.__name__
        if name not in AIRFLOW_MODULES and name not in _PACKAGES:
            raise ModuleNotFoundError(
                f"No module named {name!r}: orchestrator does not provide this Airflow module",
                name=name,
            )
        module.__dict__["_CompatModule__names"] = AIRFLOW_MODULES.get(name, {})
        module.__file__ = "<orchestrator's Airflow names>"
        module.__path__ = []


_installed: bool | None = None


def install_airflow_compat() -> bool:
    """Install the finder unless Apache Airflow is importable; True if it is installed."""
    global _installed
    if _installed is None:
        real = importlib.util.find_spec("airflow") is not None
        if not real:
            sys.meta_path.append(_Finder())
        _installed = not real
    return _installed
