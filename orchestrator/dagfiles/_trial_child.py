"""The trial-import child (see ``_trial``): imports DAG files named on stdin.

It keeps its real stdout for replies and points fd 1 at stderr, so a file that
prints cannot corrupt them. A file that forks while it imports fails: the copy it
forked exits at once (it must never run on as a second child holding the pipes) and
the reply names the fork. Replies are bounded (``_files.bounded``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from orchestrator.errors import DagImportError

MAX_REPLY = 256 * 1024
_forks: list[int] = []


def _in_forked_copy() -> None:
    os._exit(70)


def _serve() -> None:
    """Read paths, import each, reply with the DAG ids or the error."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    os.register_at_fork(after_in_child=_in_forked_copy, after_in_parent=lambda: _forks.append(1))
    # Imported once fd 1 points at stderr: nothing printed on import reaches the replies.
    from orchestrator.dagfiles._files import bounded, load_dag_file

    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in sys.stdin:
        path = json.loads(line)["path"]
        _forks.clear()
        try:
            dags = load_dag_file(Path(path))
            reply: dict[str, Any] = {"ok": True, "dag_ids": [d.dag_id for d in dags]}
        except DagImportError as exc:
            reply = {"ok": False, "error": exc.message, "traceback": exc.traceback}
        except BaseException as exc:  # anything a file raises is its import error
            reply = {"ok": False, "error": bounded(type(exc).__name__, 200), "traceback": ""}
        if _forks:
            reply = {"ok": False, "error": "the file forked a process while importing"}
        text = json.dumps(reply)
        if len(text) > MAX_REPLY:
            reply = {"ok": False, "error": f"the file's import result is over {MAX_REPLY} bytes"}
            text = json.dumps(reply)
        replies.write(text + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
