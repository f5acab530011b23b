"""The ``orchestrator`` command.

The global flags are here; each command group is a module of its own (``_dags``...).

Exit codes: 0 success; 1 the work failed (a DAG run or task failed); 2 bad usage or
bad input (unknown DAG, malformed JSON, broken DAG file, unreachable store).
``--json`` prints exactly one JSON document on stdout; messages go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from orchestrator._logging import configure_logging
from orchestrator._settings import load_settings
from orchestrator.cli import (
    _alerts,
    _connections,
    _daemon,
    _dags,
    _datasets,
    _db,
    _events,
    _pools,
    _runs,
    _tasks,
    _variables,
)
from orchestrator.cli._common import UsageError
from orchestrator.errors import ConfigError, OrchestratorError

__all__ = ["main"]

_GROUPS = (
    _daemon,
    _dags,
    _runs,
    _tasks,
    _datasets,
    _events,
    _alerts,
    _variables,
    _connections,
    _pools,
    _db,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    parser.add_argument("--dags", help="DAGs folder (ORCHESTRATOR_DAGS)")
    parser.add_argument("--db", help="database URL (ORCHESTRATOR_DB)")
    parser.add_argument("--home", help="home folder (ORCHESTRATOR_HOME)")
    parser.add_argument("--log-format", choices=["console", "json"], help="ORCHESTRATOR_LOG_FORMAT")
    groups = parser.add_subparsers(dest="group", required=True)
    for group in _GROUPS:
        group.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(
            overrides={
                "dags": args.dags,
                "db": args.db,
                "home": args.home,
                "log_format": args.log_format,
                "api_host": getattr(args, "api_host", None),
                "api_port": getattr(args, "api_port", None),
            }
        )
        configure_logging(settings.log_format, settings.log_level)
        code: int = args.func(settings, args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, OrchestratorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code
