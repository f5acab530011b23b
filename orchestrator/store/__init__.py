"""The metadata store: SQLite (default) or PostgreSQL, behind one interface."""

from orchestrator.store._alerts import alert_from_row, alert_json
from orchestrator.store._backend import Statement, plan_groups
from orchestrator.store._datasets import DatasetInfo, DatasetRefs, event_json
from orchestrator.store._migrations import MIGRATIONS
from orchestrator.store._store import ConnectionRecord, Store, open_store
from orchestrator.store._writer import Ack

__all__ = [
    "MIGRATIONS",
    "Ack",
    "ConnectionRecord",
    "DatasetInfo",
    "DatasetRefs",
    "Statement",
    "Store",
    "alert_from_row",
    "alert_json",
    "event_json",
    "open_store",
    "plan_groups",
]
