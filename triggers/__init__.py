"""Trigger definitions: time schedules and dataset conditions.

This package knows nothing of tasks or the store: it turns definitions and inputs
(time, dataset updates) into decisions.
"""

from triggers._cron import PRESETS, Cron
from triggers._dataset import Dataset, DatasetAll, DatasetAny, DatasetCondition
from triggers._schedule import DatasetAndTime, DatasetOrTime, Schedule, parse_schedule

__all__ = [
    "PRESETS",
    "Cron",
    "Dataset",
    "DatasetAll",
    "DatasetAndTime",
    "DatasetAny",
    "DatasetCondition",
    "DatasetOrTime",
    "Schedule",
    "parse_schedule",
]
