"""Trigger definitions: time schedules, dataset conditions and event patterns.

This package knows nothing of tasks or the store: it turns definitions and inputs
(time, dataset updates, events) into decisions.

``Asset``, ``AssetAll``, ``AssetAny`` and ``AssetOrTimeSchedule`` are Airflow 3's
names for ``Dataset``, ``DatasetAll``, ``DatasetAny`` and ``DatasetOrTime``: the
same objects.
"""

from triggers._cron import PRESETS, Cron, CronTriggerTimetable
from triggers._dataset import (
    Dataset,
    DatasetAll,
    DatasetAny,
    DatasetCondition,
    DatasetEvent,
    normalize_uri,
)
from triggers._eventpattern import EventPattern
from triggers._pattern import PatternError
from triggers._patternset import PatternSet
from triggers._schedule import (
    AssetOrTimeSchedule,
    DatasetAndTime,
    DatasetOrTime,
    Schedule,
    parse_schedule,
)

Asset = Dataset
AssetAll = DatasetAll
AssetAny = DatasetAny

__all__ = [
    "PRESETS",
    "Asset",
    "AssetAll",
    "AssetAny",
    "AssetOrTimeSchedule",
    "Cron",
    "CronTriggerTimetable",
    "Dataset",
    "DatasetAll",
    "DatasetAndTime",
    "DatasetAny",
    "DatasetCondition",
    "DatasetEvent",
    "DatasetOrTime",
    "EventPattern",
    "PatternError",
    "PatternSet",
    "Schedule",
    "normalize_uri",
    "parse_schedule",
]
