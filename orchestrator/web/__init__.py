"""The web UI (SPEC section 9): server-rendered pages on the API's app, made live by one
server-sent event stream per page (``_hub``, ``_routes``)."""

from orchestrator.web._changes import run_changed, state_changed
from orchestrator.web._hub import ChangeHub
from orchestrator.web._routes import ui_routes

__all__ = ["ChangeHub", "run_changed", "state_changed", "ui_routes"]
