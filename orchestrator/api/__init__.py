"""The daemon's HTTP API."""

from orchestrator.api._app import create_app
from orchestrator.api._server import serve_api

__all__ = ["create_app", "serve_api"]
