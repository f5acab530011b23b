"""The ETL example: two ingestions, a transform, a combine and a load, retried on failure."""

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from orchestrator import DAG
from orchestrator.operators import PythonOperator

WORK = Path(tempfile.gettempdir()) / "orchestrator_etl_example"


def ingest_from_rest_api(ds, **context):
    WORK.mkdir(exist_ok=True)
    rows = [{"id": i, "amount": i * 10, "day": ds} for i in range(1, 6)]
    (WORK / "api.json").write_text(json.dumps(rows))
    print(f"ingested {len(rows)} rows from the API for {ds}")
    return len(rows)


def ingest_from_database(ds):
    WORK.mkdir(exist_ok=True)
    rows = [{"id": i, "customer": f"c{i}"} for i in range(1, 6)]
    (WORK / "db.json").write_text(json.dumps(rows))
    print(f"ingested {len(rows)} rows from the database")
    return len(rows)


def transform_api_data(ti):
    rows = json.loads((WORK / "api.json").read_text())
    for row in rows:
        row["amount_eur"] = round(row["amount"] * 0.92, 2)
    (WORK / "api_t.json").write_text(json.dumps(rows))
    print(f"transformed {ti.xcom_pull(task_ids='ingest_from_API')} rows")


def combine_api_and_database():
    api = {r["id"]: r for r in json.loads((WORK / "api_t.json").read_text())}
    db = json.loads((WORK / "db.json").read_text())
    combined = [{**api[r["id"]], **r} for r in db if r["id"] in api]
    (WORK / "combined.json").write_text(json.dumps(combined))
    return {"rows": len(combined)}


def load_to_warehouse(ti):
    summary = ti.xcom_pull(task_ids="combine_data")
    print(f"loaded {summary['rows']} rows into the warehouse")


with DAG(
    dag_id="dag_etl_example",
    start_date=datetime(2024, 3, 23),
    schedule="@weekly",
    catchup=False,
    tags=["etl"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "email": ["oncall@example.com"],
        "email_on_failure": True,
    },
):
    a = PythonOperator(task_id="ingest_from_API", python_callable=ingest_from_rest_api)
    b = PythonOperator(task_id="ingest_from_database", python_callable=ingest_from_database)
    c = PythonOperator(task_id="transform_data", python_callable=transform_api_data)
    d = PythonOperator(task_id="combine_data", python_callable=combine_api_and_database)
    e = PythonOperator(task_id="load_warehouse", python_callable=load_to_warehouse)
    [a >> c, b] >> d >> e
