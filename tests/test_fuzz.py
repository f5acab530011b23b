"""Every route of the API fuzzed from its OpenAPI document (schemathesis, bounded): valid
and invalid requests alike get no 5xx, never end the daemon, and a refused request
writes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from orchestrator.api._openapi import openapi_document
from tests.daemon_proc import DaemonProc

pytestmark = pytest.mark.timeout(300)

EXAMPLES = int(os.environ.get("ORCHESTRATOR_TEST_FUZZ_EXAMPLES", "40"))

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], database="none"
)

DAG_FILE = """
from orchestrator import DAG
from orchestrator.operators import BashOperator
with DAG("d"):
    BashOperator(task_id="t", bash_command="echo hello")
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon for the module, with a DAG, a finished run and an import error."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "dags").mkdir()
    (root / "dags" / "d.py").write_text(DAG_FILE)
    (root / "dags" / "broken.py").write_text("raise ValueError('broken')\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ORCHESTRATOR_") or k.startswith("ORCHESTRATOR_TEST_")
    }
    env.update(
        {
            "ORCHESTRATOR_HOME": str(root / "home"),
            "ORCHESTRATOR_DAGS": str(root / "dags"),
            "ORCHESTRATOR_API_PORT": "0",
        }
    )
    daemon = DaemonProc(root / "home")
    daemon.env = env
    daemon.start()
    daemon.api("POST", "/api/v1/dags/d/runs", json={"run_id": "r1"})
    daemon.wait_for(lambda: daemon.run_state("d", "r1") == "success", 30, "the first run")
    yield daemon
    daemon.stop()


def written(daemon: DaemonProc) -> tuple[Any, ...]:
    """What a write could have changed: the runs and the pause flag."""
    runs = daemon.api("GET", "/api/v1/dags/d/runs").json()
    dag = daemon.api("GET", "/api/v1/dags/d").json()
    return len(runs), dag["is_paused"]


OPERATIONS = [
    (r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations() if isinstance(r, Ok)
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_route_answers_5xx_or_writes_when_it_refuses(
    method: str, path: str, live: DaemonProc
) -> None:
    """Each operation of the document, as its own test (so a parallel run runs each):
    valid and invalid requests from its schema."""
    operation = schema[path][method]
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # Aimed at the objects that exist, so that bodies and queries reach the handlers'
        # checks instead of stopping at a 404 (unknown ids are tested on their own).
        if case.path_parameters:
            known = {"dag_id": "d", "run_id": "r1", "task_id": "t"}
            case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
        before = written(live)
        response = case.call(base_url=live.url, timeout=15)
        assert response.status_code < 500, (case.method, case.path, response.text[:500])
        assert live.proc is not None
        assert live.proc.poll() is None, live.output()[-2000:]
        if response.status_code >= 400 and case.method.upper() != "GET":
            assert written(live) == before, (case.method, case.path, response.text[:300])

    check()
