"""A longer chaos run than the test's: three daemons under a seeded loop of faults.

    python bench/chaos.py [--seconds 600] [--seeds 1,2,3]

The same run and checks as ``tests/test_chaos.py`` (``tests/chaos.py``): a PostgreSQL
server of its own, three daemons (``ORCHESTRATOR_HA_TAKEOVER`` 2 s), 50 DAGs on 1 and 2
second schedules, DAGs started by events and by a dataset, and a loop of ``kill -9``,
``SIGSTOP`` past the takeover time, cut sessions and one server restart; then SQL checks:
no (DAG, logical date) fired twice, no interval missed, every event consumed once by each
DAG it matches, every dataset delivery consumed by a run, every run finished, no two
tries of an instance at once. Prints what each seed counted and how long it took.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos import Chaos, check, private_server, private_server_missing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    missing = private_server_missing()
    if missing is not None:
        raise SystemExit(f"cannot run: {missing}")
    for seed in (int(s) for s in args.seeds.split(",")):
        started = time.monotonic()
        with private_server() as server:
            chaos = Chaos(
                Path(tempfile.mkdtemp(prefix="orch-bench-chaos-")),
                server.url,
                server,
                seed=seed,
                seconds=args.seconds,
            )
            try:
                chaos.run()
                chaos.settle(within=120)
            finally:
                chaos.stop()
            counted = check(chaos)
        kinds: dict[str, int] = {}
        for action in chaos.actions:
            words = action.split()
            kind = f"exited {words[3].rstrip(':')}" if words[0] == "daemon" else action
            kind = kind.split(" daemon")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        print(
            f"chaos seed {seed}, {args.seconds:g} s: all checks passed in "
            f"{time.monotonic() - started:.0f} s; counted {counted}; faults {kinds}"
        )


if __name__ == "__main__":
    main()
