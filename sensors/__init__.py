"""Sensors: tasks that wait for a condition (S3 keys, HTTP, files, time, other tasks).

``BaseSensor`` is the base of every sensor: a subclass writes ``poke(context)``;
``@task.sensor`` turns a function into one. Waiting sensors are deferred: they hold
no executor slot, and their wait is stored (``runtime._sensing`` pokes them).
"""

from orchestrator.authoring._taskflow import register_task_kind
from sensors._base import BaseSensor, DecoratedSensor, PokeReturnValue
from sensors._builtin import (
    DateTimeSensor,
    ExternalTaskSensor,
    FileSensor,
    HttpSensor,
    S3KeySensor,
    TimeDeltaSensor,
)
from sensors._more import BashSensor, DayOfWeekSensor, PythonSensor, TimeSensor

register_task_kind("sensor", DecoratedSensor)

__all__ = [
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
]
