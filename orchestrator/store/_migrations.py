"""Versioned schema migrations, one SQL text for both backends.

Rules: a migration, once released, is never edited; a change is a new version.
The SQL uses only what SQLite and PostgreSQL both accept (TEXT times in ISO 8601
UTC, INTEGER flags, JSON as TEXT, composite primary keys as idempotency keys).
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "Migration"]

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


_V1 = """
CREATE TABLE dag (
    dag_id TEXT PRIMARY KEY,
    fileloc TEXT NOT NULL DEFAULT '',
    is_paused INTEGER NOT NULL DEFAULT 0,
    schedule TEXT NOT NULL DEFAULT 'None',
    tags TEXT NOT NULL DEFAULT '[]',
    last_parsed TEXT
);
CREATE TABLE dag_run (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    run_type TEXT NOT NULL,
    logical_date TEXT,
    data_interval_start TEXT,
    data_interval_end TEXT,
    queued_at TEXT NOT NULL,
    start_date TEXT,
    end_date TEXT,
    conf TEXT NOT NULL DEFAULT '{}',
    trigger_key TEXT,
    PRIMARY KEY (dag_id, run_id)
);
CREATE INDEX dag_run_state ON dag_run (state, dag_id);
CREATE INDEX dag_run_run_id ON dag_run (run_id);
CREATE UNIQUE INDEX dag_run_trigger_key ON dag_run (dag_id, trigger_key);
CREATE TABLE task_instance (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    try_number INTEGER NOT NULL DEFAULT 0,
    max_tries INTEGER NOT NULL DEFAULT 0,
    start_date TEXT,
    end_date TEXT,
    duration DOUBLE PRECISION,
    pool TEXT NOT NULL DEFAULT 'default_pool',
    priority_weight INTEGER NOT NULL DEFAULT 1,
    operator TEXT NOT NULL DEFAULT '',
    next_retry_at TEXT,
    PRIMARY KEY (dag_id, run_id, task_id)
);
CREATE INDEX task_instance_state ON task_instance (state);
CREATE TABLE task_try (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    try_number INTEGER NOT NULL,
    state TEXT NOT NULL,
    start_date TEXT,
    end_date TEXT,
    duration DOUBLE PRECISION,
    hostname TEXT NOT NULL DEFAULT '',
    log_path TEXT NOT NULL DEFAULT '',
    error TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, try_number)
);
CREATE TABLE xcom (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, key)
);
CREATE TABLE variable (
    key TEXT PRIMARY KEY,
    val TEXT NOT NULL,
    is_encrypted INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE connection (
    conn_id TEXT PRIMARY KEY,
    conn_type TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT '',
    login TEXT NOT NULL DEFAULT '',
    password TEXT NOT NULL DEFAULT '',
    schema_name TEXT NOT NULL DEFAULT '',
    port INTEGER,
    extra TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE pool (
    name TEXT PRIMARY KEY,
    slots INTEGER NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
INSERT INTO pool (name, slots, description) VALUES ('default_pool', 128, 'Default pool');
CREATE TABLE dataset_event (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    timestamp TEXT NOT NULL,
    source_dag_id TEXT,
    source_run_id TEXT,
    source_task_id TEXT
);
CREATE INDEX dataset_event_uri ON dataset_event (uri, timestamp);
CREATE TABLE event (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    detail_type TEXT NOT NULL,
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE sensor_wait (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    next_poke_at TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    deadline TEXT,
    state TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (dag_id, run_id, task_id)
);
CREATE TABLE alert_outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_error TEXT
)
"""

# driver: who drives a queued or running run. NULL is the daemon; "cli:HOST:PID" is a
# `dags test` or `dags backfill` process, whose runs the daemon leaves alone.
_V2 = """
ALTER TABLE dag_run ADD COLUMN driver TEXT;
CREATE INDEX dag_run_type ON dag_run (dag_id, run_type, data_interval_end)
"""

# Datasets. dataset_event is made anew (nothing wrote the first one): an event, once.
# dataset: every URI known, with its latest update. dataset_ref: which DAGs consume and
# produce which URIs, as their files say. dataset_delivery: an event delivered to a
# consumer, written with the event; run_id is set, once, by the run that consumes it, so
# pending events are the deliveries without a run.
_V3 = """
DROP TABLE dataset_event;
CREATE TABLE dataset_event (
    id TEXT PRIMARY KEY,
    uri TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    timestamp TEXT NOT NULL,
    source_dag_id TEXT,
    source_run_id TEXT,
    source_task_id TEXT
);
CREATE INDEX dataset_event_uri ON dataset_event (uri, timestamp);
CREATE INDEX dataset_event_time ON dataset_event (timestamp);
CREATE TABLE dataset (
    uri TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    last_updated TEXT
);
CREATE TABLE dataset_ref (
    uri TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (uri, dag_id, kind)
);
CREATE INDEX dataset_ref_dag ON dataset_ref (dag_id);
CREATE TABLE dataset_delivery (
    dag_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    uri TEXT NOT NULL,
    run_id TEXT,
    PRIMARY KEY (dag_id, event_id)
);
CREATE INDEX dataset_delivery_run ON dataset_delivery (dag_id, run_id);
CREATE INDEX dataset_delivery_event ON dataset_delivery (event_id);
CREATE INDEX dataset_delivery_pending ON dataset_delivery (dag_id) WHERE run_id IS NULL
"""

# Events. The first event table had no writer: made anew. handled: the runs the event
# starts are stored (see store._events). dag_run_trigger finds the runs an event started.
_V4 = """
DROP TABLE event;
CREATE TABLE event (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    detail_type TEXT NOT NULL,
    time TEXT NOT NULL,
    received_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    body TEXT NOT NULL,
    handled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX event_received ON event (received_at, id);
CREATE INDEX event_source ON event (source, received_at, id);
CREATE INDEX event_unhandled ON event (received_at) WHERE handled = 0;
CREATE INDEX dag_run_trigger ON dag_run (trigger_key)
"""

# The outbox of alert deliveries (state: pending, delivered, failed: the dead letters),
# and the deadlines runs missed. The first alert_outbox was never written. An alert's id
# starts with its time, so the primary key is written in order (one index page per
# commit, not one per alert); lists read it backwards.
_V5 = """
DROP TABLE alert_outbox;
CREATE TABLE alert_outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    event TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT,
    try_number INTEGER NOT NULL DEFAULT 0,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0,
    finished_at TEXT,
    last_error TEXT
);
CREATE INDEX alert_outbox_pending ON alert_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_outbox_failed ON alert_outbox (id) WHERE state = 'failed';
CREATE TABLE deadline_miss (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    deadline_at TEXT NOT NULL,
    missed_at TEXT NOT NULL,
    reference TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, position)
);
CREATE INDEX deadline_miss_at ON deadline_miss (missed_at)
"""

# Dynamic task mapping: a task instance, its tries, XComs and sensor wait are keyed by
# map_index too (-1: not mapped). The tables are made anew with their rows, since a
# primary key cannot be altered in place; rendered_map_index is an instance's label.
_V6 = """
ALTER TABLE task_instance RENAME TO task_instance_v5;
CREATE TABLE task_instance (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index INTEGER NOT NULL DEFAULT -1,
    state TEXT NOT NULL,
    try_number INTEGER NOT NULL DEFAULT 0,
    max_tries INTEGER NOT NULL DEFAULT 0,
    start_date TEXT,
    end_date TEXT,
    duration DOUBLE PRECISION,
    pool TEXT NOT NULL DEFAULT 'default_pool',
    priority_weight INTEGER NOT NULL DEFAULT 1,
    operator TEXT NOT NULL DEFAULT '',
    next_retry_at TEXT,
    rendered_map_index TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
INSERT INTO task_instance (dag_id, run_id, task_id, state, try_number, max_tries, start_date,
    end_date, duration, pool, priority_weight, operator, next_retry_at)
SELECT dag_id, run_id, task_id, state, try_number, max_tries, start_date, end_date, duration,
    pool, priority_weight, operator, next_retry_at FROM task_instance_v5;
DROP TABLE task_instance_v5;
CREATE INDEX task_instance_state ON task_instance (state);
ALTER TABLE task_try RENAME TO task_try_v5;
CREATE TABLE task_try (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index INTEGER NOT NULL DEFAULT -1,
    try_number INTEGER NOT NULL,
    state TEXT NOT NULL,
    start_date TEXT,
    end_date TEXT,
    duration DOUBLE PRECISION,
    hostname TEXT NOT NULL DEFAULT '',
    log_path TEXT NOT NULL DEFAULT '',
    error TEXT,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, try_number)
);
INSERT INTO task_try (dag_id, run_id, task_id, try_number, state, start_date, end_date,
    duration, hostname, log_path, error)
SELECT dag_id, run_id, task_id, try_number, state, start_date, end_date, duration, hostname,
    log_path, error FROM task_try_v5;
DROP TABLE task_try_v5;
ALTER TABLE xcom RENAME TO xcom_v5;
CREATE TABLE xcom (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index INTEGER NOT NULL DEFAULT -1,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (dag_id, run_id, task_id, map_index, key)
);
INSERT INTO xcom (dag_id, run_id, task_id, key, value, timestamp)
SELECT dag_id, run_id, task_id, key, value, timestamp FROM xcom_v5;
DROP TABLE xcom_v5;
ALTER TABLE sensor_wait RENAME TO sensor_wait_v5;
CREATE TABLE sensor_wait (
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index INTEGER NOT NULL DEFAULT -1,
    next_poke_at TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    deadline TEXT,
    state TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
INSERT INTO sensor_wait (dag_id, run_id, task_id, next_poke_at, attempt, deadline, state)
SELECT dag_id, run_id, task_id, next_poke_at, attempt, deadline, state FROM sensor_wait_v5;
DROP TABLE sensor_wait_v5
"""

# rendered: a try's templated fields as rendered for it (JSON), for the UI.
_V7 = """
ALTER TABLE task_try ADD COLUMN rendered TEXT
"""

# Several daemons on one PostgreSQL store (store._members). daemon: one row per daemon
# incarnation; its epoch, never reused, is the fencing token every write of it checks;
# times are the database's clock in seconds. shard: which daemon schedules the DAGs of
# each shard, and how many times the shard changed hands (epoch). alert_outbox.owner:
# the daemon that delivers the alert (NULL: alone, or a CLI process wrote it).
_V8 = """
CREATE TABLE daemon (
    epoch INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    api_url TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    ended_by INTEGER,
    shards INTEGER NOT NULL DEFAULT 0,
    takeovers INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE shard (
    id INTEGER PRIMARY KEY,
    owner INTEGER,
    epoch INTEGER NOT NULL DEFAULT 0,
    taken_at DOUBLE PRECISION
);
CREATE INDEX dag_run_driver ON dag_run (driver) WHERE state IN ('queued', 'running');
ALTER TABLE alert_outbox ADD COLUMN owner INTEGER
"""

# Tries run by workers (store._work): try_work is the try's life outside the daemon,
# written queued by the daemon that drives the run, claimed once by a worker, kept
# alive by its heartbeats and finished by it with a write only its claim allows; times
# are the database's clock in seconds. try_log: the output a worker's try printed, in
# chunks, for the daemon to append to the try's log file.
_V9 = """
CREATE TABLE try_work (
    id TEXT PRIMARY KEY,
    dag_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    map_index INTEGER NOT NULL DEFAULT -1,
    try_number INTEGER NOT NULL,
    queue TEXT NOT NULL,
    driver TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    pid INTEGER,
    cancel INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    logged INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    claimed_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION
);
CREATE INDEX try_work_instance ON try_work (dag_id, run_id, task_id, map_index);
CREATE INDEX try_work_open ON try_work (state) WHERE state IN ('queued', 'running');
CREATE TABLE try_log (
    work_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (work_id, seq)
)
"""

# A pool's slots shared by several daemons (core._slots): what each live daemon may
# hold of each pool (granted) and what its tries want (wanted), written under the
# pool's row lock; and the pool slots a try on a worker holds, which count against the
# pool while it runs though the daemon that sent it is gone.
_V10 = """
CREATE TABLE pool_grant (
    pool TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    granted INTEGER NOT NULL,
    wanted INTEGER NOT NULL,
    PRIMARY KEY (pool, epoch)
);
ALTER TABLE try_work ADD COLUMN pool TEXT NOT NULL DEFAULT 'default_pool';
ALTER TABLE try_work ADD COLUMN pool_slots INTEGER NOT NULL DEFAULT 1
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1),
    Migration(2, "run driver", _V2),
    Migration(3, "datasets", _V3),
    Migration(4, "events", _V4),
    Migration(5, "alerts", _V5),
    Migration(6, "mapped task instances", _V6),
    Migration(7, "rendered templated fields", _V7),
    Migration(8, "daemons and shards", _V8),
    Migration(9, "tries run by workers", _V9),
    Migration(10, "pool slots shared by daemons", _V10),
)
