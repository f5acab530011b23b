"""Alerts: what each alert delivers, email over a real SMTP server, signed webhooks to a
real HTTP receiver, callbacks and notifiers, the outbox's retries and dead letters."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import httpx
import pytest

from orchestrator import DAG, BaseNotifier, DeadlineAlert, DeadlineReference, Webhook
from orchestrator._clock import SystemClock
from orchestrator._settings import Settings
from orchestrator.alerts._plan import RetryPolicy, plan_alerts
from orchestrator.core import Alert, AlertEvent, AlertRecord, RunRecord, RunState, TaskState
from orchestrator.errors import DagDefinitionError
from orchestrator.operators import EmailOperator, EmptyOperator, PythonOperator
from orchestrator.resources._services import Services
from orchestrator.resources._smtp import build_message, send_email
from orchestrator.runtime._drive import register_dags
from orchestrator.runtime._executor import LocalExecutor
from orchestrator.runtime._intake import RunIntake
from orchestrator.runtime._live import LiveRun
from orchestrator.runtime._scheduler import Scheduler
from orchestrator.store import Store, open_store
from tests.alert_servers import SmtpSink, WebhookReceiver, free_port, self_signed, server_tls
from tests.helpers import run_cli

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Shell:
    scheduler: Scheduler
    store: Store
    dags: dict[str, DAG]

    async def run(self, dag: DAG) -> LiveRun:
        """One manual run of ``dag``, driven to its end (its alerts go on after it)."""
        self.dags[dag.dag_id] = dag
        await register_dags(self.store, [dag])
        intake = RunIntake(self.store, SystemClock(), dags=self.dags.get)
        record = await intake.manual(dag.dag_id)
        live = await self.scheduler.start_run(dag, record)
        with anyio.fail_after(30):
            await live.done.wait()
        return live

    async def alerts(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.store.list_alerts(**filters)


@asynccontextmanager
async def shell(settings: Settings) -> AsyncIterator[Shell]:
    """A scheduler with its outbox, on the test's store, as the daemon runs one."""
    clock = SystemClock()
    async with open_store(settings.db_url, clock=clock) as store:
        dags: dict[str, DAG] = {}
        executor = LocalExecutor(Services(settings, store), thread_slots=4)
        scheduler = Scheduler(
            store, executor, clock, parallelism=8, logs_dir=settings.logs_dir, dags=dags.get
        )
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.serve)
            yield Shell(scheduler, store, dags)
            tg.cancel_scope.cancel()


def fast(settings: Settings, **more: Any) -> Settings:
    """Retries within milliseconds, so a test sees them all."""
    return replace(settings, alert_retry_delay=0.05, alert_max_retry_delay=0.1, **more)


def mail_to(sink: SmtpSink, settings: Settings) -> Settings:
    return replace(settings, smtp_host="127.0.0.1", smtp_port=sink.port, smtp_from="o@x.org")


def failing(message: str = "disk full") -> Any:
    def fail() -> None:
        print("hello from the try")
        raise ValueError(message)

    return fail


# -- what each alert delivers (pure) ----------------------------------------------------


def test_each_alert_delivers_to_each_of_its_notifiers() -> None:
    """A failure mails and posts to every webhook and calls the callbacks; a retry mails
    only with email_on_retry; a success only calls back; a run's end calls the DAG's."""
    with DAG(
        "d",
        default_args={"email": ["ops@x.org"], "alert_webhooks": ["http://h/1"]},
        on_failure_callback=[print, print],
    ) as dag:
        PythonOperator(
            task_id="t",
            python_callable=print,
            alert_webhooks=["http://h/1", Webhook("http://h/2", secret="own")],
            email_on_retry=False,
            on_failure_callback=print,
            on_success_callback=print,
        )
    run = ("d", "r1")

    def plan(*alerts: Alert, at: datetime = T0) -> list[tuple[str, str]]:
        return [(r.kind, r.target) for r in plan_alerts(dag, run, alerts, at, seal=str.upper)]

    failure = Alert(AlertEvent.TASK_FAILURE, "t", 2, "ValueError: x")
    assert plan(failure) == [
        ("email", "ops@x.org"),
        ("webhook", "http://h/1"),
        ("webhook", "http://h/2"),
        ("callback", "task:t:on_failure_callback:0"),
    ]
    assert plan(Alert(AlertEvent.TASK_RETRY, "t", 1, "x")) == [
        ("webhook", "http://h/1"),
        ("webhook", "http://h/2"),
    ]
    assert plan(Alert(AlertEvent.TASK_SUCCESS, "t", 1)) == [
        ("callback", "task:t:on_success_callback:0")
    ]
    assert plan(Alert(AlertEvent.RUN_FAILURE, error="task_failure")) == [
        ("callback", "dag:on_failure_callback:0"),
        ("callback", "dag:on_failure_callback:1"),
    ]
    assert plan(Alert(AlertEvent.RUN_SUCCESS)) == []
    records = plan_alerts(dag, run, [failure], T0, seal=str.upper)
    assert records[2].payload["secret"] == "OWN"  # sealed, never stored as given
    assert "secret" not in records[1].payload
    assert records[0].payload == {"state": "failed", "error": "ValueError: x"}
    # The same alert raised at the same moment is the same delivery; another try's, or
    # the same at another moment (a run cleared and ended again), is another.
    again = plan_alerts(dag, run, [failure], T0, seal=str.upper)
    assert [r.id for r in again] == [r.id for r in records]
    other = plan_alerts(dag, run, [replace(failure, try_number=3)], T0, seal=str.upper)
    assert not {r.id for r in other} & {r.id for r in records}
    end = Alert(AlertEvent.RUN_FAILURE)
    first = plan_alerts(dag, run, [end], T0, seal=str.upper)
    assert first[0].id != plan_alerts(dag, run, [end], T0 + timedelta(1), seal=str.upper)[0].id


def test_retries_back_off_and_give_up_after_the_attempts_or_the_age() -> None:
    policy = RetryPolicy(max_attempts=5, delay=2.0, max_delay=5.0, max_age=60.0)
    waits = [(policy.next_attempt(n, T0, T0) or T0) - T0 for n in (1, 2, 3, 4)]
    assert waits == [timedelta(seconds=s) for s in (2, 4, 5, 5)]
    assert policy.next_attempt(5, T0, T0) is None  # out of attempts
    assert policy.next_attempt(1, T0, T0 + timedelta(seconds=59)) is None  # too old by then


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alert_webhooks": ["ftp://h/x"]}, "alert_webhooks[0]: 'ftp://h/x' is not an http(s) URL"),
        ({"alert_webhooks": [3]}, "alert_webhooks[0] must be a URL or a Webhook"),
        ({"email": ["a@x.org\nBcc: b@x.org"]}, "email must be addresses"),
        ({"on_failure_callback": [print, "x"]}, "on_failure_callback[1] must be callable"),
    ],
)
def test_bad_alert_settings_fail_the_dag_naming_task_and_field(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(DagDefinitionError) as caught, DAG("d"):
        EmptyOperator(task_id="t", **kwargs)
    assert "DAG 'd', task 't'" in str(caught.value)
    assert message in str(caught.value)


def test_bad_deadlines_fail_the_dag() -> None:
    with pytest.raises(DagDefinitionError, match="DAG 'd': deadline must be a DeadlineAlert"):
        DAG("d", deadline="soon")  # type: ignore[arg-type]
    with pytest.raises(DagDefinitionError, match="DAG 'd': deadline interval must be a timedelta"):
        DAG(
            "d",
            deadline=DeadlineAlert(
                DeadlineReference.DAGRUN_QUEUED_AT,
                5,  # type: ignore[arg-type]
                print,
            ),
        )


def test_a_deadline_counts_from_its_reference() -> None:
    hour = timedelta(hours=1)
    queued, logical = T0 + 2 * hour, T0
    assert (
        DeadlineAlert(DeadlineReference.DAGRUN_QUEUED_AT, hour, print).deadline(queued, logical)
        == T0 + 3 * hour
    )
    assert (
        DeadlineAlert(DeadlineReference.DAGRUN_LOGICAL_DATE, hour, print).deadline(queued, logical)
        == T0 + hour
    )
    fixed = DeadlineReference.FIXED_DATETIME(datetime(2026, 3, 2))
    assert DeadlineAlert(fixed, hour, print).deadline(queued, None) == datetime(
        2026, 3, 2, 1, tzinfo=UTC
    )
    assert (
        DeadlineAlert(DeadlineReference.DAGRUN_LOGICAL_DATE, hour, print).deadline(queued, None)
        is None
    )


def test_a_header_never_carries_a_line_break() -> None:
    """An address with CR/LF is refused naming the field; a subject's become spaces."""
    with pytest.raises(ValueError, match=r"to: 'a@x.org\\r\\nBcc: evil@x.org' holds a line break"):
        build_message("o@x.org", ["a@x.org\r\nBcc: evil@x.org"], "s", text="t")
    message, recipients = build_message(
        "o@x.org", ["a@x.org"], "one\r\nBcc: evil@x.org", text="t", bcc=["b@x.org"]
    )
    assert message["Subject"] == "one Bcc: evil@x.org"
    assert "Bcc" not in message
    assert recipients == ["a@x.org", "b@x.org"]


# -- email over SMTP ----------------------------------------------------------------------


async def test_a_retry_and_a_failure_mail_their_error_and_the_log_lines(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    with DAG("mailing") as dag:
        PythonOperator(
            task_id="t",
            python_callable=failing(),
            retries=1,
            retry_delay=0,
            email=["ops@x.org", "lead@x.org"],
        )
        PythonOperator(
            task_id="quiet", python_callable=failing(), email="ops@x.org", email_on_failure=False
        )
    async with shell(mail_to(smtp_sink, settings)) as sh:
        live = await sh.run(dag)
        await sh.scheduler.alerts.drained()
    assert live.tis["t"].state == TaskState.FAILED
    mails = await anyio.to_thread.run_sync(smtp_sink.wait_for, 2)
    assert len(mails) == 2  # nothing for "quiet"
    subjects = sorted(m.message["Subject"] for m in mails)
    assert subjects == [
        "[orchestrator] Task failed: mailing.t (try 2)",
        "[orchestrator] Task up for retry: mailing.t (try 1)",
    ]
    for mail in mails:
        assert mail.recipients == ["ops@x.org", "lead@x.org"]
        assert mail.sender == "o@x.org"
        text = mail.body("plain")
        assert "ValueError: disk full" in text
        assert "hello from the try" in text  # the last lines of the try's log
        assert f"Run:   {live.record.run_id}" in text
        assert "ValueError: disk full" in mail.body("html")
        assert mail.message["X-Orchestrator-Alert"]


async def test_the_alert_mail_templates_are_settings(
    settings: Settings, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    """Subject and bodies come from Jinja files named by settings, as in Airflow's
    [email] subject_template; a template that cannot be read dead-letters the mail,
    naming the setting."""
    subject = tmp_path / "subject.j2"
    subject.write_text("{{ alert.dag_id }}/{{ alert.task_id }} is {{ alert.state }}\n")
    html = tmp_path / "body.html.j2"
    html.write_text("<p>{{ alert.error }} ({{ title }})</p>")
    with DAG("templated") as dag:
        PythonOperator(task_id="t", python_callable=failing(), email="ops@x.org")
    configured = replace(
        mail_to(smtp_sink, settings),
        email_subject_template=str(subject),
        email_html_template=str(html),
    )
    async with shell(configured) as sh:
        await sh.run(dag)
        await sh.scheduler.alerts.drained()
    (mail,) = await anyio.to_thread.run_sync(smtp_sink.wait_for, 1)
    assert mail.message["Subject"] == "templated/t is failed"
    assert mail.body("html").strip() == "<p>ValueError: disk full (Task failed)</p>"
    assert "ValueError: disk full" in mail.body("plain")  # the default text part
    missing = replace(configured, email_subject_template=str(tmp_path / "nope.j2"))
    async with shell(missing) as sh:
        await sh.run(dag)
        await sh.scheduler.alerts.drained()
        (dead,) = await sh.alerts(state="failed")
    assert dead["attempts"] == 1
    assert dead["last_error"].startswith("setting email_subject_template: cannot read ")


async def test_email_operator_sends_cc_bcc_templated_subject_and_files(
    settings: Settings, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    report = tmp_path / "report.csv"
    report.write_text("a,b\n1,2\n")
    with DAG("report") as dag:
        EmailOperator(
            task_id="send",
            to="a@x.org; b@x.org",
            cc=["c@x.org"],
            bcc="d@x.org",
            subject="Report for {{ dag.dag_id }}",
            html_content="<b>numbers</b>",
            files=[str(report)],
        )
    async with shell(mail_to(smtp_sink, settings)) as sh:
        live = await sh.run(dag)
    assert live.tis["send"].state == TaskState.SUCCESS
    (mail,) = await anyio.to_thread.run_sync(smtp_sink.wait_for, 1)
    assert mail.recipients == ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
    assert (mail.message["To"], mail.message["Cc"]) == ("a@x.org, b@x.org", "c@x.org")
    assert "Bcc" not in mail.message
    assert mail.message["Subject"] == "Report for report"
    assert "<b>numbers</b>" in mail.body("html")
    (attachment,) = list(mail.message.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() == "a,b\n1,2\n"


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_mail_over_tls_with_a_login(settings: Settings, tls: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = server_tls(cert, key)
    sink = SmtpSink().start(
        starttls=context if tls == "starttls" else None,
        implicit_tls=context if tls == "ssl" else None,
        auth=True,
    )
    try:
        configured = replace(
            mail_to(sink, settings),
            smtp_starttls=tls == "starttls",
            smtp_ssl=tls == "ssl",
            smtp_user="alerts",
            smtp_password="pw",
            smtp_ca_file=str(cert),
        )
        await send_email(configured, ["a@x.org"], "over tls", text="hello")
        (mail,) = await anyio.to_thread.run_sync(sink.wait_for, 1)
        assert mail.message["Subject"] == "over tls"
        assert sink.logins == [("alerts", "pw")]
    finally:
        sink.stop()


async def test_smtp_down_leaves_the_task_alone_then_dead_letters_and_retry_sends_it(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    """With no SMTP server, the alert is retried, then dead-lettered; `alerts list
    --failed` shows it and `alerts retry` sends it once the server is there."""
    down = fast(mail_to(smtp_sink, settings), smtp_port=free_port(), alert_max_attempts=3)
    with DAG("nomail") as dag:
        PythonOperator(task_id="bad", python_callable=failing(), email="ops@x.org")
        EmptyOperator(task_id="after", trigger_rule="all_done")
    async with shell(down) as sh:
        live = await sh.run(dag)
        assert (live.tis["bad"].state, live.tis["after"].state) == ("failed", "success")
        await sh.scheduler.alerts.drained()
    listed = run_cli("alerts", "list", "--failed", "--json", db=settings.db_url)
    assert listed.returncode == 0, listed.stderr
    (dead,) = json.loads(listed.stdout)
    assert (dead["kind"], dead["state"], dead["attempts"]) == ("email", "failed", 3)
    assert "Connect" in dead["last_error"] or "connect" in dead["last_error"]
    assert dead["error"] == "ValueError: disk full"
    again = run_cli("alerts", "retry", dead["id"], db=settings.db_url)
    assert again.returncode == 0, again.stderr
    assert "pending" in again.stdout
    twice = run_cli("alerts", "retry", dead["id"], db=settings.db_url)
    assert twice.returncode != 0
    assert "not failed" in twice.stderr
    async with shell(mail_to(smtp_sink, settings)) as sh:
        assert await sh.scheduler.alerts.recover() == 1
        await sh.scheduler.alerts.drained()
        (row,) = await sh.alerts()
    assert (row["state"], row["attempts"]) == ("delivered", 1)
    (mail,) = await anyio.to_thread.run_sync(smtp_sink.wait_for, 1)
    assert mail.message["Subject"] == "[orchestrator] Task failed: nomail.bad (try 1)"


# -- webhooks --------------------------------------------------------------------------


async def test_webhooks_are_signed_and_carry_the_alert(
    settings: Settings, webhooks: WebhookReceiver
) -> None:
    with DAG("hooked") as dag:
        PythonOperator(
            task_id="t",
            python_callable=failing(),
            alert_webhooks=[
                f"{webhooks.url}/global",
                Webhook(f"{webhooks.url}/own", secret="its-own"),
                Webhook(f"{webhooks.url}/unsigned", secret=""),
            ],
        )
    async with shell(replace(settings, webhook_secret="s3cret")) as sh:
        live = await sh.run(dag)
        await sh.scheduler.alerts.drained()
    hits = {h.path: h for h in await anyio.to_thread.run_sync(webhooks.wait_for, 3)}
    for path, secret in (("/global", "s3cret"), ("/own", "its-own")):
        hit = hits[path]
        expected = "sha256=" + hmac.new(secret.encode(), hit.body, hashlib.sha256).hexdigest()
        assert hit.headers["x-orchestrator-signature"] == expected
    assert "x-orchestrator-signature" not in hits["/unsigned"].headers
    doc = hits["/global"].json()
    assert {k: doc[k] for k in ("event", "dag_id", "run_id", "task_id", "try_number")} == {
        "event": "task_failure",
        "dag_id": "hooked",
        "run_id": live.record.run_id,
        "task_id": "t",
        "try_number": 1,
    }
    assert (doc["state"], doc["error"]) == ("failed", "ValueError: disk full")
    assert "hello from the try" in doc["log_excerpt"]
    assert doc["text"].startswith("Task failed: hooked.t (try 1), run ")
    assert doc["text"].endswith("ValueError: disk full")
    assert hits["/global"].headers["idempotency-key"] == doc["id"]
    assert hits["/global"].headers["content-type"] == "application/json"
    assert len({h.headers["idempotency-key"] for h in hits.values()}) == 3  # one per target


async def test_a_webhook_answering_500_is_delivered_once_it_answers_200(
    settings: Settings, webhooks: WebhookReceiver
) -> None:
    webhooks.script.extend([(500, 0.0), (503, 0.0)])
    with DAG("flaky") as dag:
        PythonOperator(task_id="t", python_callable=failing(), alert_webhooks=[webhooks.url])
    async with shell(fast(settings)) as sh:
        live = await sh.run(dag)
        at_run_end = len(webhooks.items)
        await sh.scheduler.alerts.drained()
        (row,) = await sh.alerts()
    assert live.record.state == RunState.FAILED
    assert at_run_end < 3
    hits = await anyio.to_thread.run_sync(webhooks.wait_for, 3)
    assert len(hits) == 3
    assert len({h.headers["idempotency-key"] for h in hits}) == 1  # one alert, tried 3 times
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 3, None)


async def test_a_webhook_that_does_not_answer_in_time_is_dead_lettered(
    settings: Settings, webhooks: WebhookReceiver
) -> None:
    webhooks.default = (200, 2.0)
    with DAG("slowhook") as dag:
        PythonOperator(task_id="t", python_callable=failing(), alert_webhooks=[webhooks.url])
    async with shell(fast(settings, alert_timeout=0.2, alert_max_attempts=2)) as sh:
        live = await sh.run(dag)
        await sh.scheduler.alerts.drained()
        (row,) = await sh.alerts(state="failed")
    assert live.tis["t"].state == TaskState.FAILED
    assert row["attempts"] == 2
    assert "did not answer within 0.2 s" in row["last_error"]


# -- callbacks and notifiers ---------------------------------------------------------------


class Recorded(BaseNotifier):
    """A custom notifier, as Airflow users write one."""

    template_fields: ClassVar[tuple[str, ...]] = ("message",)
    seen: ClassVar[list[str]] = []

    def __init__(self, message: str) -> None:
        self.message = message

    def notify(self, context: dict[str, Any]) -> None:
        Recorded.seen.append(self.message)


async def test_notifiers_and_callbacks_sync_async_and_lists(settings: Settings) -> None:
    """A BaseNotifier subclass is a callback with its template fields rendered; async and
    sync callbacks, and lists of them, are all called; the DAG's comes after the tasks'."""
    Recorded.seen = []
    order: list[str] = []

    async def on_run_failure(context: dict[str, Any]) -> None:
        order.append(f"dag {context['reason']} {context['alert']['event']}")

    with DAG("notified", on_failure_callback=on_run_failure) as dag:
        PythonOperator(
            task_id="t",
            python_callable=failing(),
            on_failure_callback=[
                Recorded("{{ ti.task_id }} of {{ dag.dag_id }}: {{ exception }}"),
                lambda c: order.append(f"task {c['alert']['try_number']}"),
            ],
        )
    async with shell(settings) as sh:
        await sh.run(dag)
        await sh.scheduler.alerts.drained()
    assert Recorded.seen == ["t of notified: ValueError: disk full"]
    assert order == ["task 1", "dag task_failure run_failure"]
    assert Recorded("x")({"ti": None}) is None  # called as a plain callback too


async def test_a_callback_the_dag_no_longer_defines_is_dead_lettered_at_once(
    settings: Settings,
) -> None:
    record = AlertRecord(
        "x1",
        "callback",
        "task_failure",
        "gone",
        "r",
        "t",
        1,
        "task:t:on_failure_callback:0",
        {"state": "failed", "error": None},
        T0,
    )
    async with shell(fast(settings)) as sh:  # a process that knows no DAG "gone"
        await sh.store.write(sh.store.statements([record]))
        sh.scheduler.alerts.submit([record])
        await sh.scheduler.alerts.drained()
        (row,) = await sh.alerts()
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert "no longer defines task:t:on_failure_callback:0" in row["last_error"]


async def test_an_alert_written_twice_is_stored_and_delivered_once(settings: Settings) -> None:
    """The outbox's id is the idempotency key: a repeated write stores nothing new, and
    an alert handed over twice is delivered once."""
    seen: list[int] = []
    with DAG("twice") as dag:
        PythonOperator(
            task_id="t",
            python_callable=print,
            on_failure_callback=lambda c: seen.append(c["alert"]["try_number"]),
        )

    def plan(try_number: int) -> list[AlertRecord]:
        alert = Alert(AlertEvent.TASK_FAILURE, "t", try_number, "x")
        return plan_alerts(dag, ("twice", "r1"), [alert], T0, seal=str)

    async with shell(settings) as sh:
        sh.dags["twice"] = dag
        for records in (plan(1), plan(1), plan(2)):
            await sh.store.write(sh.store.statements(records))
        rows = await sh.alerts()
        assert len(rows) == 2
        sh.scheduler.alerts.submit(plan(1))
        sh.scheduler.alerts.submit(plan(1))
        await sh.scheduler.alerts.drained()
    assert seen == [1]
    assert plan(1)[0].id.startswith(f"{int(T0.timestamp() * 1e6):014x}-")
    assert (
        plan(1)[0].id
        < plan_alerts(
            dag,
            ("twice", "r1"),
            [Alert(AlertEvent.TASK_FAILURE, "t", 1)],
            T0 + timedelta(1),
            seal=str,
        )[0].id
    )  # ids sort by time


def _run(dag_id: str, run_id: str, queued: datetime) -> RunRecord:
    return RunRecord(dag_id, run_id, RunState.QUEUED, "manual", queued, queued)


async def test_a_deadline_missed_fires_once_and_one_met_never(settings: Settings) -> None:
    """Timers on an injected schedule: a run that ends first disarms its deadline; one that
    does not records the miss and calls back once, even when watched again (a restart)."""
    from orchestrator.alerts._deadlines import DeadlineWatch

    called: list[dict[str, Any]] = []
    got = anyio.Event()

    async def on_deadline(context: dict[str, Any]) -> None:
        called.append(context)
        got.set()

    with DAG(
        "late",
        deadline=DeadlineAlert(
            DeadlineReference.DAGRUN_QUEUED_AT, timedelta(minutes=10), on_deadline
        ),
    ) as dag:
        EmptyOperator(task_id="t")

    class Handle:
        def __init__(self, at: datetime, fire: Any) -> None:
            self.at, self.fire, self.cancelled = at, fire, False

        def cancel(self) -> None:
            self.cancelled = True

    armed: list[Handle] = []

    def schedule(at: datetime, fire: Any) -> Handle:
        armed.append(Handle(at, fire))
        return armed[-1]

    async with shell(settings) as sh:
        sh.dags["late"] = dag
        missed: list[int] = []
        watch = DeadlineWatch(
            sh.store,
            SystemClock(),
            schedule,
            sh.scheduler.alerts,
            dags=sh.dags.get,
            on_missed=lambda: missed.append(1),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.serve)
            met, late = _run("late", "met", T0), _run("late", "late", T0)
            await sh.store.insert_runs([met, late])
            watch.watch(met)
            watch.watch(late)
            assert [h.at for h in armed] == [T0 + timedelta(minutes=10)] * 2
            watch.ended("late", "met")
            assert armed[0].cancelled
            assert not armed[1].cancelled
            armed[1].fire()
            with anyio.fail_after(10):
                await got.wait()
            again = DeadlineWatch(
                sh.store, SystemClock(), schedule, sh.scheduler.alerts, dags=sh.dags.get
            )
            pending = _run("late", "pending", T0 + timedelta(minutes=1))
            await again.open([late, pending])  # a restart: what was missed stays missed,
            assert [h.at for h in armed[2:]] == [T0 + timedelta(minutes=11)]  # the rest armed
            tg.cancel_scope.cancel()
        misses = await sh.store.deadline_misses()
    assert [(m["run_id"], m["position"]) for m in misses] == [("late", 0)]
    assert missed == [1]
    (context,) = called
    assert context["alert"]["event"] == "deadline_missed"
    assert context["alert"]["deadline"]["deadline_at"].startswith("2026-03-01T00:10:00")
    assert context["dag_run"].run_id == "late"


# -- the daemon, end to end --------------------------------------------------------------

DAEMON_DAGS = """
from datetime import timedelta
from orchestrator import DAG, DeadlineAlert, DeadlineReference
from orchestrator.alerts import WebhookNotifier
from orchestrator.operators import BashOperator

URL = {url!r}
with DAG("late", deadline=DeadlineAlert(
    DeadlineReference.DAGRUN_QUEUED_AT, timedelta(seconds=0.3), WebhookNotifier(URL + "/late")
)):
    BashOperator(task_id="wait", bash_command="while [ ! -f {gate} ]; do sleep 0.02; done")
with DAG("broken"):
    BashOperator(
        task_id="bad", bash_command="echo going down; exit 3", alert_webhooks=[URL + "/bad"]
    )
with DAG("killed"):
    BashOperator(task_id="long", bash_command="sleep 60", alert_webhooks=[URL + "/killed"])
"""


def _dags(dag_file: Any, webhooks: WebhookReceiver, tmp_path: Path) -> Path:
    gate = tmp_path / "gate"
    dag_file("alerting.py", DAEMON_DAGS.format(url=webhooks.url, gate=gate))
    return gate


def _wait_hit(webhooks: WebhookReceiver, path: str, count: int = 1) -> list[Any]:
    """Block until ``count`` POSTs to ``path`` arrived; those."""
    items = webhooks.wait_until(lambda items: sum(h.path == path for h in items) >= count)
    return [h for h in items if h.path == path]


def test_the_daemon_alerts_with_the_log_url_and_counts_a_missed_deadline(
    daemon: Any, dag_file: Any, webhooks: WebhookReceiver, tmp_path: Path, db_url: str
) -> None:
    """A failed task's webhook links to its log on this daemon; a run past its deadline
    alerts once and goes on; the API lists the miss, /metrics counts both, `alerts list`
    shows the deliveries."""
    gate = _dags(dag_file, webhooks, tmp_path)
    d = daemon()
    for dag_id in ("late", "broken"):
        assert d.api("POST", f"/api/v1/dags/{dag_id}/runs", json={}).status_code == 201
    (late,) = _wait_hit(webhooks, "/late")
    doc = late.json()
    assert (doc["event"], doc["dag_id"], doc["task_id"]) == ("deadline_missed", "late", None)
    assert doc["deadline"]["reference"] == "DAGRUN_QUEUED_AT"
    (bad,) = _wait_hit(webhooks, "/bad")
    failure = bad.json()
    assert failure["error"] == "RuntimeError: bash command failed: exit code 3"
    assert "going down" in failure["log_excerpt"]
    assert failure["log_url"].startswith(d.url + "/api/v1/runs/")
    logs = httpx.get(failure["log_url"], timeout=10)
    assert logs.status_code == 200
    assert "going down" in logs.json()["tries"][0]["log"]
    gate.write_text("")  # the late run goes on to its end
    (run,) = d.wait_for(lambda: [r for r in d.runs("late") if r["state"] == "success"])
    misses = d.api("GET", "/api/v1/deadlines").json()
    assert [(m["dag_id"], m["run_id"]) for m in misses] == [("late", run["run_id"])]
    metrics = d.api("GET", "/metrics").text
    assert "orchestrator_deadlines_missed_total 1.0" in metrics
    assert 'orchestrator_alert_deliveries_total{kind="webhook",outcome="delivered"} 1.0' in metrics
    assert 'orchestrator_alert_deliveries_total{kind="callback",outcome="delivered"} 1.0' in metrics
    assert 'orchestrator_alerts{state="delivered"} 2.0' in metrics
    assert 'orchestrator_alerts{state="failed"} 0.0' in metrics
    listed = run_cli("alerts", "list", "--json", db=db_url)
    assert listed.returncode == 0, listed.stderr
    assert sorted((a["event"], a["state"]) for a in json.loads(listed.stdout)) == [
        ("deadline_missed", "delivered"),
        ("task_failure", "delivered"),
    ]
    assert len(webhooks.items) == 2  # once each


def test_a_try_killed_with_the_daemon_still_alerts_after_the_restart(
    daemon: Any, dag_file: Any, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    _dags(dag_file, webhooks, tmp_path)
    first = daemon()
    run_id = first.api("POST", "/api/v1/dags/killed/runs", json={}).json()["run_id"]

    def running() -> bool:
        response = first.api("GET", f"/api/v1/runs/{run_id}", params={"dag_id": "killed"})
        tasks = response.json()["tasks"]  # none until the run has started
        return bool(tasks and tasks[0]["state"] == "running")

    first.wait_for(running, what="the try running")
    first.kill9()
    second = daemon()
    (hit,) = _wait_hit(webhooks, "/killed")
    doc = hit.json()
    assert (doc["event"], doc["try_number"]) == ("task_failure", 1)
    assert doc["error"] == "the process running this try stopped"
    assert second.run_state("killed", run_id) == "failed"


def test_a_restart_delivers_the_alerts_left_pending(
    daemon: Any, dag_file: Any, webhooks: WebhookReceiver, tmp_path: Path
) -> None:
    webhooks.script.append((500, 0.0))
    _dags(dag_file, webhooks, tmp_path)
    env = {"ORCHESTRATOR_ALERT_RETRY_DELAY": "2", "ORCHESTRATOR_RECONCILE_INTERVAL": "0.2"}
    first = daemon(**env)
    assert first.api("POST", "/api/v1/dags/broken/runs", json={}).status_code == 201
    _wait_hit(webhooks, "/bad")
    first.stop()
    assert len(webhooks.items) == 1  # the retry was not due before the stop
    second = daemon(**env)
    hits = _wait_hit(webhooks, "/bad", 2)
    assert hits[0].headers["idempotency-key"] == hits[1].headers["idempotency-key"]
    assert "pending alerts taken from the store" in second.output()
    (alert,) = second.wait_for(
        lambda: [a for a in second.api("GET", "/api/v1/alerts").json() if a["state"] == "delivered"]
    )
    assert alert["attempts"] == 2


async def test_the_sender_process_answers_and_is_started_again_when_it_dies(
    settings: Settings, webhooks: WebhookReceiver
) -> None:
    """Email and webhooks go out through a child process: its answers say delivered,
    failed (retried) or never deliverable; killed, it is replaced, and what waited on it
    fails, to be retried."""
    from orchestrator.alerts._sender import Sender, SendFailed

    webhooks.script.append((500, 0.0))
    facts = {"id": "a1", "event": "task_failure", "dag_id": "d", "run_id": "r"}
    sender = Sender(settings)
    async with anyio.create_task_group() as tg:
        await tg.start(sender.serve)
        with pytest.raises(SendFailed, match="answered 500") as failed:
            await sender.deliver("webhook", webhooks.url, facts, None)
        assert not failed.value.permanent
        await sender.deliver("webhook", webhooks.url, facts, "s")
        with pytest.raises(SendFailed, match="SMTP not configured") as never:
            await sender.deliver("email", "a@x.org", facts, None)
        assert never.value.permanent
        first = sender.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with anyio.fail_after(20):
            errors = []
            try:
                await sender.deliver("webhook", webhooks.url, facts, None)
            except SendFailed as exc:  # sent to the process as it died
                errors.append(str(exc))
                await sender.deliver("webhook", webhooks.url, facts, None)
            assert errors in ([], ["the alert sender process stopped"])
        assert sender.pid not in (None, first)
        tg.cancel_scope.cancel()
    hits = webhooks.items
    assert hits[1].headers["x-orchestrator-signature"].startswith("sha256=")
    assert hits[-1].json()["text"] == "Task failed: d, run r"


def test_a_dead_letter_is_listed_counted_and_sent_again_through_the_daemon(
    daemon: Any, dag_file: Any, webhooks: WebhookReceiver, tmp_path: Path, db_url: str
) -> None:
    webhooks.script.append((500, 0.0))
    _dags(dag_file, webhooks, tmp_path)
    d = daemon(ORCHESTRATOR_ALERT_MAX_ATTEMPTS="1")
    assert d.api("POST", "/api/v1/dags/broken/runs", json={}).status_code == 201
    (dead,) = d.wait_for(lambda: d.api("GET", "/api/v1/alerts?state=failed").json())
    assert (dead["attempts"], dead["last_error"]) == (
        1,
        f"WebhookDeliveryError: {webhooks.url}/bad answered 500: receiver error",
    )
    assert 'orchestrator_alerts{state="failed"} 1.0' in d.api("GET", "/metrics").text
    listed = run_cli("alerts", "list", "--failed", db=db_url)
    assert dead["id"] in listed.stdout
    again = run_cli("alerts", "retry", dead["id"], db=db_url)
    assert again.returncode == 0, again.stderr
    hits = _wait_hit(webhooks, "/bad", 2)
    assert hits[0].headers["idempotency-key"] == hits[1].headers["idempotency-key"]
    (alert,) = d.wait_for(lambda: d.api("GET", "/api/v1/alerts?state=delivered").json())
    assert alert["id"] == dead["id"]
    conflict = d.api("POST", f"/api/v1/alerts/{dead['id']}/retry", json={})
    assert conflict.status_code == 409
    assert "is delivered, not failed" in conflict.json()["error"]
    assert d.api("POST", "/api/v1/alerts/nope/retry", json={}).status_code == 404
