"""Three daemons under a seeded loop of faults, then the store's invariants (tests/chaos.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import Chaos, check, private_server, private_server_missing

pytestmark = pytest.mark.postgres

SECONDS = float(os.environ.get("ORCHESTRATOR_TEST_CHAOS_SECONDS", "45"))
SEED = int(os.environ.get("ORCHESTRATOR_TEST_CHAOS_SEED", "7"))


@pytest.mark.timeout(SECONDS + 240)  # the run, then up to a minute each to settle and stop
def test_three_daemons_under_kills_freezes_cut_sessions_and_a_server_restart(
    tmp_path: Path,
) -> None:
    """No (DAG, logical date) fired twice, no interval missed, every event consumed once by
    each DAG it matches, every dataset delivery consumed by a run, every run finished, no
    two tries of an instance at once."""
    missing = private_server_missing()
    if missing is not None:
        if os.environ.get("ORCHESTRATOR_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{missing} (ORCHESTRATOR_TEST_REQUIRE_POSTGRES=1)")
        pytest.skip(missing)
    with private_server() as server:
        chaos = Chaos(tmp_path, server.url, server, seed=SEED, seconds=SECONDS)
        try:
            chaos.run()
            chaos.settle()
        finally:
            chaos.stop()
        counted = check(chaos)
    print(f"chaos seed {SEED}, {SECONDS:g} s: {counted}; faults: {chaos.actions}")
    assert chaos.restarted_server
    assert counted["events"] > 0
    assert counted["dataset_deliveries"] > 0
