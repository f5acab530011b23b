"""Records and rows: the SQL that writes each record, and the records rows read back.

Rules (the store's): every write is an upsert or an insert-if-absent on a natural
key; times are ISO 8601 UTC text, JSON is text; a try's error text is stored with
every registered secret masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator._clock import iso, parse_iso
from orchestrator._logging import mask
from orchestrator.core._records import (
    AlertRecord,
    DatasetEventRecord,
    InstanceDropped,
    Record,
    RunRecord,
    SensorWaitCleared,
    SensorWaitRecord,
    TaskInstanceRecord,
    TryRecord,
    XComRecord,
)
from orchestrator.core._state import RunState, TaskState
from orchestrator.store._backend import Statement
from triggers._dataset import DatasetEvent

__all__ = [
    "ALERT_CLAIM",
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
    "TI_COLUMNS",
    "ConnectionRecord",
    "alert_statement",
    "conn_from_row",
    "consumed_statement",
    "dataset_event_statements",
    "event_from_row",
    "run_from_row",
    "run_statement",
    "sensor_wait_statement",
    "statements",
    "ti_from_row",
    "ti_statement",
    "try_statement",
    "xcom_statement",
    "xcoms_cleared",
]


@dataclass(slots=True)
class ConnectionRecord:
    conn_id: str
    conn_type: str
    host: str = ""
    login: str = ""
    password: str = ""  # stored encrypted; decrypted by the connections module
    schema: str = ""
    port: int | None = None
    extra: str = ""  # stored encrypted
    description: str = ""


RUN_COLUMNS = (
    "dag_id, run_id, state, run_type, logical_date, data_interval_start, data_interval_end, "
    "queued_at, start_date, end_date, conf, trigger_key, driver"
)


TI_COLUMNS = (
    "dag_id, run_id, task_id, state, try_number, max_tries, start_date, end_date, duration, "
    "pool, priority_weight, operator, next_retry_at, map_index, rendered_map_index"
)


_TI_UPSERT = (
    f"INSERT INTO task_instance ({TI_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dag_id, run_id, task_id, map_index) DO UPDATE SET state = excluded.state, "
    "try_number = excluded.try_number, max_tries = excluded.max_tries, "
    "start_date = excluded.start_date, end_date = excluded.end_date, "
    "duration = excluded.duration, pool = excluded.pool, "
    "priority_weight = excluded.priority_weight, operator = excluded.operator, "
    "next_retry_at = excluded.next_retry_at, rendered_map_index = excluded.rendered_map_index"
)


_TRY_UPSERT = (
    "INSERT INTO task_try (dag_id, run_id, task_id, try_number, state, start_date, end_date, "
    "duration, hostname, log_path, error, map_index, rendered) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dag_id, run_id, task_id, map_index, try_number) DO UPDATE SET "
    "state = excluded.state, "
    "start_date = excluded.start_date, end_date = excluded.end_date, "
    "duration = excluded.duration, hostname = excluded.hostname, "
    "log_path = excluded.log_path, error = excluded.error, rendered = excluded.rendered"
)


_XCOM_UPSERT = (
    "INSERT INTO xcom (dag_id, run_id, task_id, key, value, timestamp, map_index) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dag_id, run_id, task_id, map_index, key) DO UPDATE SET value = excluded.value, "
    "timestamp = excluded.timestamp"
)


def ti_statement(ti: TaskInstanceRecord) -> Statement:
    return Statement(
        "task_instance",
        _TI_UPSERT,
        (
            ti.dag_id,
            ti.run_id,
            ti.task_id,
            str(ti.state),
            ti.try_number,
            ti.max_tries,
            iso(ti.start_date),
            iso(ti.end_date),
            ti.duration,
            ti.pool,
            ti.priority_weight,
            ti.operator,
            iso(ti.next_retry_at),
            ti.map_index,
            ti.rendered_map_index,
        ),
    )


def try_statement(tr: TryRecord) -> Statement:
    return Statement(
        "task_try",
        _TRY_UPSERT,
        (
            tr.dag_id,
            tr.run_id,
            tr.task_id,
            tr.try_number,
            str(tr.state),
            iso(tr.start_date),
            iso(tr.end_date),
            tr.duration,
            tr.hostname,
            tr.log_path,
            mask(tr.error) if tr.error else tr.error,
            tr.map_index,
            tr.rendered,
        ),
    )


def run_statement(run: RunRecord, *, insert_only: bool = False) -> Statement:
    """Upsert the run's state and dates.

    With ``insert_only``, insert it unless its (dag_id, run_id) or its
    (dag_id, trigger_key) is taken: never an overwrite, never an error.
    """
    conflict = (
        "ON CONFLICT DO NOTHING"
        if insert_only
        else "ON CONFLICT (dag_id, run_id) DO UPDATE SET state = excluded.state, "
        "start_date = excluded.start_date, end_date = excluded.end_date, "
        "driver = excluded.driver"
    )
    return Statement(
        "dag_run",
        f"INSERT INTO dag_run ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"{conflict}",
        (
            run.dag_id,
            run.run_id,
            str(run.state),
            run.run_type,
            iso(run.logical_date),
            iso(run.data_interval_start),
            iso(run.data_interval_end),
            iso(run.queued_at),
            iso(run.start_date),
            iso(run.end_date),
            json.dumps(run.conf),
            run.trigger_key,
            run.driver,
        ),
    )


def xcom_statement(record: XComRecord, at: datetime) -> Statement:
    """Upsert one XCom, stamped ``at``."""
    return Statement(
        "xcom",
        _XCOM_UPSERT,
        (
            record.dag_id,
            record.run_id,
            record.task_id,
            record.key,
            record.value,
            iso(at),
            record.map_index,
        ),
    )


def xcoms_cleared(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Statement:
    return Statement(
        "xcom",
        "DELETE FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?",
        (dag_id, run_id, task_id, map_index),
    )


EVENT_COLUMNS = "id, uri, extra, timestamp, source_dag_id, source_run_id, source_task_id"


def dataset_event_statements(event: DatasetEvent) -> list[Statement]:
    """Store ``event`` once, deliver it to every consumer of its URI, and date the dataset.

    The deliveries come from ``dataset_ref`` in the same transaction, so a consumer known
    to the store when the event is written has it pending whoever wrote it. Repeating the
    write changes nothing: an event, a delivery (consumed or not) is written once.
    """
    at = iso(event.timestamp)
    return [
        Statement(
            "dataset_delivery",
            "INSERT INTO dataset_delivery (dag_id, event_id, uri) SELECT dag_id, ?, ? "
            "FROM dataset_ref WHERE uri = ? AND kind = 'consumer' ON CONFLICT DO NOTHING",
            (event.id, event.uri, event.uri),
        ),
        Statement(
            "dataset_event",
            f"INSERT INTO dataset_event ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (
                event.id,
                event.uri,
                json.dumps(dict(event.extra), separators=(",", ":")),
                at,
                event.source_dag_id,
                event.source_run_id,
                event.source_task_id,
            ),
        ),
        Statement(
            "dataset",
            "INSERT INTO dataset (uri, created_at, last_updated) VALUES (?, ?, ?) "
            "ON CONFLICT (uri) DO UPDATE SET last_updated = excluded.last_updated",
            (event.uri, at, at),
        ),
    ]


def consumed_statement(dag_id: str, run_id: str, event: DatasetEvent) -> Statement:
    """``event``, pending for ``dag_id``, is consumed by its run ``run_id`` (once: a delivery
    already consumed keeps its run)."""
    return Statement(
        "dataset_delivery",
        "INSERT INTO dataset_delivery (dag_id, event_id, uri, run_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (dag_id, event_id) DO UPDATE SET run_id = excluded.run_id "
        "WHERE dataset_delivery.run_id IS NULL",
        (dag_id, event.id, event.uri, run_id),
    )


def sensor_wait_statement(record: SensorWaitRecord) -> Statement:
    return Statement(
        "sensor_wait",
        "INSERT INTO sensor_wait (dag_id, run_id, task_id, next_poke_at, attempt, deadline, state, "
        "map_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (dag_id, run_id, task_id, map_index) DO UPDATE SET "
        "next_poke_at = excluded.next_poke_at, attempt = excluded.attempt, "
        "deadline = excluded.deadline, state = excluded.state",
        (
            record.dag_id,
            record.run_id,
            record.task_id,
            iso(record.next_poke),
            record.pokes,
            iso(record.deadline),
            record.state,
            record.map_index,
        ),
    )


def event_from_row(row: dict[str, Any]) -> DatasetEvent:
    return DatasetEvent(
        id=row["id"],
        uri=row["uri"],
        timestamp=parse_iso(row["timestamp"]) or datetime.min,
        extra=json.loads(row["extra"]),
        source_dag_id=row["source_dag_id"],
        source_run_id=row["source_run_id"],
        source_task_id=row["source_task_id"],
    )


NOTICE_CHANNEL = "orchestrator"  # NOTIFY: a hint to look at the store now, never the news


def notice_statement(payload: str) -> Statement:
    """Wake the daemons that LISTEN on the store (store._members, rule 6); sent with the
    transaction it is written in, so it arrives after that commit."""
    return Statement("notice", "SELECT pg_notify(?, ?)", (NOTICE_CHANNEL, payload))


ALERT_CLAIM = timedelta(seconds=60)


def alert_statement(
    record: AlertRecord, first_attempt_at: datetime, owner: int | None = None
) -> Statement:
    """Insert the alert unless its id is stored: an alert raised again is delivered once;
    ``owner``: the daemon (epoch) that delivers it, when several share the store."""
    payload = dict(record.payload)
    if payload.get("error"):
        payload["error"] = mask(payload["error"])
    return Statement(
        "alert_outbox",
        "INSERT INTO alert_outbox (id, kind, event, dag_id, run_id, task_id, try_number, "
        "target, payload, state, attempts, next_attempt_at, created_at, seq, owner) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            record.id,
            record.kind,
            record.event,
            record.dag_id,
            record.run_id,
            record.task_id,
            record.try_number,
            record.target,
            json.dumps(payload, separators=(",", ":"), default=str),
            "pending",
            0,
            iso(first_attempt_at),
            iso(record.created_at),
            record.seq,
            owner,
        ),
    )


def statements(
    records: Iterable[Record], now: datetime, owner: int | None = None
) -> list[Statement]:
    """The statements that persist ``records``, in their order (XComs stamped ``now``;
    alerts delivered by ``owner``)."""
    out: list[Statement] = []
    for record in records:
        if isinstance(record, TaskInstanceRecord):
            out.append(ti_statement(record))
        elif isinstance(record, TryRecord):
            out.append(try_statement(record))
        elif isinstance(record, RunRecord):
            out.append(run_statement(record))
        elif isinstance(record, XComRecord):
            out.append(xcom_statement(record, now))
        elif isinstance(record, DatasetEventRecord):
            out += dataset_event_statements(record.event)
        elif isinstance(record, SensorWaitRecord):
            out.append(sensor_wait_statement(record))
        elif isinstance(record, AlertRecord):
            # Claimed by the process that raised it (it delivers from memory) for a while;
            # after that, anyone delivering from the store may take it.
            out.append(alert_statement(record, now + ALERT_CLAIM, owner))
        elif isinstance(record, SensorWaitCleared):
            out.append(
                Statement(
                    "sensor_wait",
                    "DELETE FROM sensor_wait WHERE dag_id = ? AND run_id = ? AND task_id = ? "
                    "AND map_index = ?",
                    (record.dag_id, record.run_id, record.task_id, record.map_index),
                )
            )
        elif isinstance(record, InstanceDropped):
            out.append(
                Statement(
                    "task_instance",
                    "DELETE FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? "
                    "AND map_index = -1",
                    (record.dag_id, record.run_id, record.task_id),
                )
            )
        else:
            out.append(
                xcoms_cleared(record.dag_id, record.run_id, record.task_id, record.map_index)
            )
    return out


def run_from_row(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        state=RunState(row["state"]),
        run_type=row["run_type"],
        logical_date=parse_iso(row["logical_date"]),
        data_interval_start=parse_iso(row["data_interval_start"]),
        data_interval_end=parse_iso(row["data_interval_end"]),
        queued_at=parse_iso(row["queued_at"]) or datetime.min,
        start_date=parse_iso(row["start_date"]),
        end_date=parse_iso(row["end_date"]),
        conf=json.loads(row["conf"]),
        trigger_key=row["trigger_key"],
        driver=row["driver"],
    )


def ti_from_row(row: dict[str, Any]) -> TaskInstanceRecord:
    return TaskInstanceRecord(
        dag_id=row["dag_id"],
        run_id=row["run_id"],
        task_id=row["task_id"],
        state=TaskState(row["state"]),
        try_number=row["try_number"],
        max_tries=row["max_tries"],
        start_date=parse_iso(row["start_date"]),
        end_date=parse_iso(row["end_date"]),
        duration=row["duration"],
        pool=row["pool"],
        priority_weight=row["priority_weight"],
        operator=row["operator"],
        next_retry_at=parse_iso(row["next_retry_at"]),
        map_index=row["map_index"],
        rendered_map_index=row["rendered_map_index"],
    )


def conn_from_row(r: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        conn_id=r["conn_id"],
        conn_type=r["conn_type"],
        host=r["host"],
        login=r["login"],
        password=r["password"],
        schema=r["schema_name"],
        port=r["port"],
        extra=r["extra"],
        description=r["description"],
    )
