"""The daemon's HTTP API, on a control plane and the store's reads (``_protocol``)."""

from orchestrator.api._app import create_app
from orchestrator.api._protocol import ControlPlane, RunQueries
from orchestrator.api._server import serve_api

__all__ = ["ControlPlane", "RunQueries", "create_app", "serve_api"]
