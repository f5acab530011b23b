"""The API described as an OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

The routes of ``_app`` and the paths here are the same set (a test holds them so);
the shapes are those of SPEC section 7 and the CLI's ``--json``.
"""

from __future__ import annotations

from typing import Any

from orchestrator.api._schemas import ALERT_PATHS, EVENT_PATHS, SCHEMAS, SHARED, json_body
from orchestrator.core._intake import MAX_CONF_DEPTH

__all__ = ["openapi_document"]

_DATE = SHARED["date"]
_ERROR = SHARED["error"]
_KEY = SHARED["key"]
_RUN_ID = SHARED["run_id"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query_int(name: str, maximum: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": 0, "maximum": maximum},
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    return {
        "required": bool(required),
        "content": {"application/json": {"schema": schema | {"required": required}}},
    }


_MARK = {"enum": ["success", "failed"]}
_MAP_INDEX = {"type": "integer", "minimum": 0, "maximum": 10_000}
_ACTION_ANSWERS = {"400": _ERROR, "404": _ERROR, "409": _ERROR, "503": _ERROR}
_DAG_ID = _path("dag_id", _KEY)
_DAG_FILTER = {
    "name": "dag_id",
    "in": "query",
    "required": False,
    "description": "the DAG, when several DAGs have a run with this id",
    "schema": _KEY,
}
_PATHS: dict[str, Any] = {
    "/api/v1/health": {
        "get": {
            "summary": "Liveness and counts; never needs the token",
            "security": [],
            "responses": {
                "200": json_body(
                    "the daemon is up",
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"const": "ok"},
                            "dags": {"type": "integer"},
                            "import_errors": {"type": "integer"},
                            "running_tasks": {"type": "integer"},
                            "loading": {"type": "boolean"},
                            "daemon": {
                                "type": "object",
                                "description": "with several daemons on a PostgreSQL store: "
                                "this daemon's lease (epoch), the shards of DAGs it schedules, "
                                "the lapsed leases it took over, and the daemons",
                                "properties": {
                                    "epoch": {"type": "integer"},
                                    "shards": {"type": "integer"},
                                    "takeovers": {"type": "integer"},
                                    "daemons": {"type": "array", "items": _ref("Daemon")},
                                },
                            },
                        },
                    },
                )
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": json_body("the OpenAPI document", {"type": "object"})},
        }
    },
    "/api/v1/dags": {
        "get": {
            "summary": "Every DAG, by id",
            "responses": {"200": json_body("the DAGs", {"type": "array", "items": _ref("Dag")})},
        }
    },
    "/api/v1/dags/{dag_id}": {
        "parameters": [_DAG_ID],
        "get": {
            "summary": "One DAG, with its tasks and next run",
            "responses": {"200": json_body("the DAG", _ref("DagDetail")), "404": _ERROR},
        },
        "patch": {
            "summary": "Pause or unpause a DAG",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["is_paused"],
                            "additionalProperties": False,
                            "properties": {"is_paused": {"type": "boolean"}},
                        }
                    }
                },
            },
            "responses": {
                "200": json_body("the DAG", _ref("Dag")),
                "400": _ERROR,
                "404": _ERROR,
                "503": _ERROR,
            },
        },
    },
    "/api/v1/dags/{dag_id}/runs": {
        "parameters": [_DAG_ID],
        "get": {
            "summary": "The DAG's runs, newest first",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "required": False,
                    "schema": {"enum": ["queued", "running", "success", "failed"]},
                },
                _query_int("limit", 10_000, "at most this many runs (100)"),
            ],
            "responses": {
                "200": json_body("the runs", {"type": "array", "items": _ref("Run")}),
                "400": _ERROR,
                "404": _ERROR,
            },
        },
        "post": {
            "summary": "Trigger a run",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "conf": {
                                    "type": ["object", "null"],
                                    "description": (
                                        "standard JSON: finite numbers, integers of at most "
                                        "1,000 digits, no lone surrogates, nested at most "
                                        f"{MAX_CONF_DEPTH} deep"
                                    ),
                                },
                                "logical_date": {
                                    "type": ["string", "null"],
                                    "format": "date-time",
                                    "description": "from 1900-01-01 to 9000-01-01 (UTC)",
                                },
                                "run_id": _RUN_ID,
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_body("the run, queued", _ref("Run")),
                "400": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
                "413": _ERROR,
                "415": _ERROR,
                "503": _ERROR,
            },
        },
    },
    "/api/v1/runs/{run_id}": {
        "parameters": [_path("run_id", {"type": "string"}), _DAG_FILTER],
        "get": {
            "summary": "One run and its tasks",
            "responses": {
                "200": json_body("the run", _ref("RunDetail")),
                "404": _ERROR,
                "409": _ERROR,
            },
        },
        "patch": {
            "summary": "Mark a finished run success or failed; mark a running run failed (stop it)",
            "requestBody": _body({"state": _MARK}, ["state"]),
            "responses": _ACTION_ANSWERS | {"200": json_body("the run", _ref("Run"))},
        },
    },
    "/api/v1/runs/{run_id}/clear": {
        "parameters": [_path("run_id", {"type": "string"}), _DAG_FILTER],
        "post": {
            "summary": "Run finished task instances again (no task_ids: all of them)",
            "requestBody": _body(
                {
                    "task_ids": {"type": "array", "items": {"type": "string"}},
                    "map_index": {
                        "oneOf": [
                            _MAP_INDEX,
                            {"type": "array", "items": _MAP_INDEX},
                        ]
                    },
                    "downstream": {"type": "boolean"},
                },
                [],
            ),
            "responses": _ACTION_ANSWERS
            | {
                "200": json_body(
                    "the instances cleared",
                    {
                        "type": "object",
                        "required": ["dag_id", "run_id", "cleared"],
                        "properties": {
                            "dag_id": {"type": "string"},
                            "run_id": {"type": "string"},
                            "cleared": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                )
            },
        },
    },
    "/api/v1/runs/{run_id}/tasks/{task_id}": {
        "parameters": [
            _path("run_id", {"type": "string"}),
            _path("task_id", {"type": "string"}),
            _DAG_FILTER,
        ],
        "patch": {
            "summary": "Mark a finished task instance of a finished run success or failed",
            "requestBody": _body(
                {"state": _MARK, "map_index": {"type": "integer", "minimum": -1}}, ["state"]
            ),
            "responses": _ACTION_ANSWERS
            | {"200": json_body("the task instance", _ref("TaskInstance"))},
        },
    },
    "/api/v1/runs/{run_id}/tasks/{task_id}/logs": {
        "parameters": [
            _path("run_id", {"type": "string"}),
            _path("task_id", {"type": "string"}),
            _DAG_FILTER,
        ],
        "get": {
            "summary": "A task's tries, each with a window of its log (its end by default)",
            "parameters": [
                _query_int("try", 10_000, "only this try"),
                _query_int("map_index", 999_999, "the instance of a mapped task"),
                _query_int("offset", 999_999_999_999_999, "the window's first byte"),
                _query_int("length", 8 * 1024 * 1024, "the window's length in bytes"),
            ],
            "responses": {
                "200": json_body("the tries", _ref("TaskLogs")),
                "400": _ERROR,
                "404": _ERROR,
                "409": _ERROR,
            },
        },
    },
    "/api/v1/datasets": {
        "get": {
            "summary": "Every dataset: its last update, the DAGs consuming and producing it",
            "responses": {
                "200": json_body("the datasets", {"type": "array", "items": _ref("Dataset")})
            },
        }
    },
    "/api/v1/datasets/events": {
        "get": {
            "summary": "Recent dataset events, newest first, with the runs they triggered",
            "parameters": [
                {"name": "uri", "in": "query", "schema": {"type": "string", "minLength": 1}},
                _query_int("limit", 10_000, "at most this many events"),
            ],
            "responses": {
                "200": json_body("the events", {"type": "array", "items": _ref("DatasetEvent")}),
                "400": _ERROR,
            },
        },
        "post": {
            "summary": "Update a dataset from outside: its consumers see the event",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["uri"],
                            "additionalProperties": False,
                            "properties": {
                                "uri": {"type": "string", "minLength": 1, "maxLength": 3000},
                                "extra": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_body(
                    "the event and the DAGs it was delivered to",
                    {
                        "allOf": [
                            _ref("DatasetEvent"),
                            {
                                "type": "object",
                                "properties": {
                                    "consumers": {"type": "array", "items": {"type": "string"}}
                                },
                            },
                        ]
                    },
                ),
                "400": _ERROR,
                "413": _ERROR,
                "415": _ERROR,
                "503": _ERROR,
            },
        },
    },
    **EVENT_PATHS,
    **ALERT_PATHS,
    **ALERT_PATHS,
    "/api/v1/import-errors": {
        "get": {
            "summary": "The DAG files that failed to import",
            "responses": {
                "200": json_body("the errors", {"type": "array", "items": _ref("ImportError")})
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "the metrics",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Orchestrator API",
            "version": "1",
            "description": (
                "The daemon's HTTP API. Writes need Content-Type: application/json; "
                "with a token configured, every route but /api/v1/health needs "
                "Authorization: Bearer <token>."
            ),
        },
        "paths": _PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],  # the token when one is configured
    }
