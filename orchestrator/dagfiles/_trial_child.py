"""The trial-import child (see ``_trial``): imports DAG files named on stdin.

It keeps its real stdout for replies and points fd 1 at stderr, so a file that
prints cannot corrupt them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import DagImportError


def _serve() -> None:
    """Read paths, import each, reply with the DAG ids or the error."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    # Imported once fd 1 points at stderr: nothing printed on import reaches the replies.
    from orchestrator.dagfiles._files import load_dag_file

    for line in sys.stdin:
        path = json.loads(line)["path"]
        try:
            dags = load_dag_file(Path(path))
            reply: dict[str, Any] = {"ok": True, "dag_ids": [d.dag_id for d in dags]}
        except DagImportError as exc:
            reply = {"ok": False, "error": exc.message, "traceback": exc.traceback}
        except BaseException as exc:  # anything a file raises is its import error
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": ""}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
