"""The OpenAPI document's shared schemas, and the events routes' paths."""

from __future__ import annotations

from typing import Any

from orchestrator.core._intake import RUN_ID_PATTERN

__all__ = ["ALERT_PATHS", "EVENT_PATHS", "SCHEMAS", "SHARED", "json_body"]

_DATE = {"type": ["string", "null"], "format": "date-time"}
_ERROR = {
    "description": "a client mistake or a refusal, naming the field or object",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_KEY = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,250}$"}
_RUN_ID = {"type": "string", "pattern": f"^{RUN_ID_PATTERN.pattern}$"}

SCHEMAS: dict[str, Any] = {
    "Dag": {
        "type": "object",
        "required": ["dag_id", "file", "schedule", "is_paused", "tags"],
        "properties": {
            "dag_id": {"type": "string"},
            "file": {"type": "string"},
            "schedule": {"type": "string"},
            "is_paused": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    },
    "DagDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Dag"},
            {
                "type": "object",
                "required": ["tasks", "next_run"],
                "properties": {
                    "tasks": {"type": "array", "items": {"type": "string"}},
                    "datasets": {
                        "description": "a dataset consumer's condition and pending events",
                        "type": "object",
                        "properties": {
                            "condition": {"type": "string"},
                            "pending_events": {"type": "integer"},
                            "updated": {"type": "array", "items": {"type": "string"}},
                            "waiting_for": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "next_run": {
                        "type": ["object", "null"],
                        "properties": {
                            "logical_date": _DATE,
                            "data_interval_start": _DATE,
                            "data_interval_end": _DATE,
                        },
                    },
                },
            },
        ]
    },
    "Run": {
        "type": "object",
        "required": [
            "dag_id",
            "run_id",
            "state",
            "run_type",
            "logical_date",
            "start_date",
            "end_date",
            "conf",
        ],
        "properties": {
            "dag_id": {"type": "string"},
            "run_id": {"type": "string"},
            "state": {"enum": ["queued", "running", "success", "failed"]},
            "run_type": {
                "enum": [
                    "manual",
                    "scheduled",
                    "backfill",
                    "dataset_triggered",
                    "event_triggered",
                ]
            },
            "logical_date": _DATE,
            "start_date": _DATE,
            "end_date": _DATE,
            "conf": {"type": "object"},
        },
    },
    "RunDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Run"},
            {
                "type": "object",
                "required": ["tasks"],
                "properties": {
                    "tasks": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/TaskInstance"},
                    }
                },
            },
        ]
    },
    "TaskInstance": {
        "type": "object",
        "required": ["task_id", "map_index", "state", "try_number"],
        "properties": {
            "task_id": {"type": "string"},
            "map_index": {"type": "integer", "minimum": -1},
            "rendered_map_index": {"type": ["string", "null"]},
            "state": {"type": "string"},
            "try_number": {"type": "integer"},
            "start_date": _DATE,
            "end_date": _DATE,
            "duration": {"type": ["number", "null"]},
        },
    },
    "Daemon": {
        "type": "object",
        "description": "a daemon on this store, alive or ended within a day",
        "required": ["epoch", "state", "host", "pid", "api_url", "shards"],
        "properties": {
            "epoch": {"type": "integer", "description": "its lease, never reused"},
            "name": {"type": "string"},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "api_url": {"type": "string"},
            "state": {"enum": ["alive", "ended"]},
            "started_at": _DATE,
            "heartbeat_age_s": {"type": "number"},
            "shards": {"type": "integer"},
            "takeovers": {"type": "integer"},
            "ended_at": _DATE,
            "ended_by": {"type": ["integer", "null"]},
        },
    },
    "TaskLogs": {
        "type": "object",
        "required": ["dag_id", "run_id", "task_id", "map_index", "tries"],
        "properties": {
            "dag_id": {"type": "string"},
            "run_id": {"type": "string"},
            "task_id": {"type": "string"},
            "map_index": {"type": "integer", "minimum": -1},
            "tries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "try_number",
                        "state",
                        "log",
                        "log_offset",
                        "log_end",
                        "log_size",
                    ],
                    "properties": {
                        "try_number": {"type": "integer"},
                        "state": {"type": "string"},
                        "start_date": _DATE,
                        "end_date": _DATE,
                        "error": {"type": ["string", "null"]},
                        "log": {"type": "string"},
                        "log_offset": {"type": "integer", "minimum": 0},
                        "log_end": {"type": "integer", "minimum": 0},
                        "log_size": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
    "Dataset": {
        "type": "object",
        "required": ["uri", "last_updated", "consumers", "producers"],
        "properties": {
            "uri": {"type": "string"},
            "last_updated": _DATE,
            "consumers": {"type": "array", "items": {"type": "string"}},
            "producers": {"type": "array", "items": {"type": "string"}},
        },
    },
    "DatasetEvent": {
        "type": "object",
        "required": ["id", "uri", "extra", "timestamp", "triggered_runs"],
        "properties": {
            "id": {"type": "string"},
            "uri": {"type": "string"},
            "extra": {"type": "object"},
            "timestamp": _DATE,
            "source_dag_id": {"type": ["string", "null"]},
            "source_run_id": {"type": ["string", "null"]},
            "source_task_id": {"type": ["string", "null"]},
            "triggered_runs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"dag_id": {"type": "string"}, "run_id": {"type": "string"}},
                },
            },
        },
    },
    "ImportError": {
        "type": "object",
        "required": ["file", "error", "traceback"],
        "properties": {
            "file": {"type": "string"},
            "error": {"type": "string"},
            "traceback": {"type": "string"},
        },
    },
}


SHARED: dict[str, Any] = {"date": _DATE, "error": _ERROR, "key": _KEY, "run_id": _RUN_ID}

SCHEMAS["Event"] = {
    "type": "object",
    "required": ["id", "source", "detail-type", "detail", "time", "received_at", "runs"],
    "properties": {
        "version": {"type": "string"},
        "id": {"type": "string"},
        "source": {"type": "string"},
        "detail-type": {"type": "string"},
        "detail": {"type": "object"},
        "time": {"type": "string"},
        "account": {"type": "string"},
        "region": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}},
        "received_at": _DATE,
        "runs": {
            "type": "array",
            "description": "the runs the event started",
            "items": {
                "type": "object",
                "properties": {"dag_id": {"type": "string"}, "run_id": {"type": "string"}},
            },
        },
    },
}

_ENTRY = {
    "type": "object",
    "required": ["Source", "DetailType", "Detail"],
    "properties": {
        "Source": {"type": "string", "minLength": 1},
        "DetailType": {"type": "string", "minLength": 1},
        "Detail": {"type": "string", "description": "a JSON object, as a string"},
        "Resources": {"type": "array", "items": {"type": "string"}},
        "Time": {"type": ["string", "number"], "description": "ISO 8601 or epoch seconds"},
    },
}
_RESULT = {
    "type": "object",
    "properties": {
        "EventId": {"type": "string"},
        "ErrorCode": {"type": "string", "enum": ["InvalidArgument", "MalformedDetail"]},
        "ErrorMessage": {"type": "string"},
    },
}


def json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A response of ``schema`` in JSON."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


EVENT_PATHS: dict[str, Any] = {
    "/api/v1/events": {
        "get": {
            "summary": "Stored events, newest first, each with the runs it started",
            "parameters": [
                {"name": "source", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 10_000},
                },
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "200": json_body(
                    "a page of events and the cursor of the next (null at the end)",
                    {
                        "type": "object",
                        "properties": {
                            "events": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Event"},
                            },
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    },
                ),
                "400": _ERROR,
            },
        },
        "post": {
            "summary": "PutEvents: store up to 10 events; each matching DAG starts a run",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["Entries"],
                            "additionalProperties": False,
                            "properties": {
                                "Entries": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 10,
                                    "items": _ENTRY,
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": json_body(
                    "per entry, in order, its event id or its error",
                    {
                        "type": "object",
                        "properties": {
                            "FailedEntryCount": {"type": "integer"},
                            "Entries": {"type": "array", "items": _RESULT},
                        },
                    },
                ),
                "400": _ERROR,
                "413": _ERROR,
                "415": _ERROR,
                "503": _ERROR,
            },
        },
    },
}


SCHEMAS["Alert"] = {
    "type": "object",
    "description": "one delivery of an alert to one notifier (failed: a dead letter)",
    "properties": {
        "id": {"type": "string", "description": "the idempotency key"},
        "kind": {"enum": ["email", "webhook", "callback"]},
        "event": {"type": "string"},
        "dag_id": {"type": "string"},
        "run_id": {"type": "string"},
        "task_id": {"type": ["string", "null"]},
        "try_number": {"type": "integer"},
        "target": {"type": "string"},
        "error": {"type": ["string", "null"]},
        "state": {"enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer"},
        "next_attempt_at": _DATE,
        "created_at": _DATE,
        "finished_at": _DATE,
        "last_error": {"type": ["string", "null"]},
    },
}
SCHEMAS["DeadlineMiss"] = {
    "type": "object",
    "properties": {
        "dag_id": {"type": "string"},
        "run_id": {"type": "string"},
        "position": {"type": "integer", "description": "which of the DAG's deadlines"},
        "deadline_at": _DATE,
        "missed_at": _DATE,
        "reference": {"type": "string"},
    },
}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 0, "maximum": 10_000},
}
_DAG = {"name": "dag_id", "in": "query", "schema": {"type": "string"}}

ALERT_PATHS: dict[str, Any] = {
    "/api/v1/alerts": {
        "get": {
            "summary": "The alert outbox, newest first; ?state=failed lists the dead letters",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"enum": ["pending", "delivered", "failed"]},
                },
                _DAG,
                _LIMIT,
            ],
            "responses": {
                "200": json_body(
                    "the alerts", {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}
                ),
                "400": _ERROR,
            },
        }
    },
    "/api/v1/alerts/{alert_id}/retry": {
        "parameters": [
            {"name": "alert_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "post": {
            "summary": "Send a dead letter again, now",
            "responses": {
                "200": json_body("the alert, pending", {"$ref": "#/components/schemas/Alert"}),
                "404": _ERROR,
                "409": _ERROR,
                "503": _ERROR,
            },
        },
    },
    "/api/v1/deadlines": {
        "get": {
            "summary": "Missed run deadlines, newest first",
            "parameters": [_DAG, _LIMIT],
            "responses": {
                "200": json_body(
                    "the misses",
                    {"type": "array", "items": {"$ref": "#/components/schemas/DeadlineMiss"}},
                ),
                "400": _ERROR,
            },
        }
    },
}
