"""Prometheus metrics of one daemon, on a registry of its own."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from orchestrator.core import RunRecord

__all__ = ["Metrics"]

_LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Gauge(
            "orchestrator_dag_runs", "DAG runs in the store by state", ["state"], registry=r
        )
        self.tasks = Gauge(
            "orchestrator_task_instances",
            "Task instances in the store by state",
            ["state"],
            registry=r,
        )
        self.queued_runs = Gauge(
            "orchestrator_queued_runs", "Runs waiting for room under max_active_runs", registry=r
        )
        self.ready_tasks = Gauge(
            "orchestrator_ready_tasks", "Task instances ready and waiting for a slot", registry=r
        )
        self.running_tasks = Gauge(
            "orchestrator_running_tasks", "Task tries queued or running in this daemon", registry=r
        )
        self.dags = Gauge("orchestrator_dags", "DAGs loaded from the DAGs folder", registry=r)
        self.import_errors = Gauge(
            "orchestrator_import_errors", "DAG files that failed to import", registry=r
        )
        self.loop_lag = Histogram(
            "orchestrator_loop_lag_seconds",
            "How late the event loop ran a 100 ms heartbeat",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.schedule_lateness = Histogram(
            "orchestrator_schedule_lateness_seconds",
            "How long after its due instant a scheduled run started",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.runs_created = Counter(
            "orchestrator_runs_created", "Runs created by this daemon", ["run_type"], registry=r
        )
        self.sensors_waiting = Gauge(
            "orchestrator_sensors_waiting", "Deferred sensors waiting for a poke", registry=r
        )
        self.poke_lateness = Histogram(
            "orchestrator_sensor_poke_lateness_seconds",
            "How late a deferred sensor's poke started, after its due instant",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.dataset_events = Counter(
            "orchestrator_dataset_events",
            "Dataset events stored (task outlets and updates from outside)",
            registry=r,
        )

        self.events_received = Counter(
            "orchestrator_events",
            "Events stored, by where they came from (api, sqs, orchestrator)",
            ["origin"],
            registry=r,
        )
        self.events_rejected = Counter(
            "orchestrator_events_rejected",
            "PutEvents entries refused and SQS messages left malformed on their queue",
            ["origin"],
            registry=r,
        )
        self.sqs_up = Gauge(
            "orchestrator_sqs_up",
            "1 while the queue answers, 0 while it fails",
            ["queue"],
            registry=r,
        )
        self.sqs_errors = Counter(
            "orchestrator_sqs_receive_errors", "Failed receives from a queue", ["queue"], registry=r
        )

        self.alert_deliveries = Counter(
            "orchestrator_alert_deliveries",
            "Alert delivery attempts by notifier kind and outcome (delivered, retried, failed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.alerts = Gauge(
            "orchestrator_alerts",
            "Alerts in the outbox by state; failed ones are the dead letters",
            ["state"],
            registry=r,
        )
        self.daemons = Gauge(
            "orchestrator_daemons",
            "daemons alive on this store (several on PostgreSQL)",
            registry=r,
        )
        self.shards = Gauge(
            "orchestrator_daemon_shards", "shards of the DAGs this daemon schedules", registry=r
        )
        self.takeovers = Gauge(
            "orchestrator_daemon_takeovers",
            "lapsed leases of other daemons this daemon ended, taking their work over",
            registry=r,
        )
        self.deadlines_missed = Counter(
            "orchestrator_deadlines_missed", "Run deadlines missed", registry=r
        )

    def run_started(self, record: RunRecord, started: datetime) -> None:
        """A scheduled run's lateness: its start after the end of its interval."""
        if record.run_type == "scheduled" and record.data_interval_end is not None:
            late = started - record.data_interval_end
            self.schedule_lateness.observe(max(0.0, late.total_seconds()))

    def set_states(self, runs: dict[str, int], tasks: dict[str, int]) -> None:
        self.runs.clear()
        for state, n in runs.items():
            self.runs.labels(state=state).set(n)
        self.tasks.clear()
        for state, n in tasks.items():
            self.tasks.labels(state=state).set(n)

    def set_alerts(self, counts: dict[str, int]) -> None:
        for state in ("pending", "delivered", "failed"):
            self.alerts.labels(state=state).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
