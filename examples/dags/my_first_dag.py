"""TaskFlow example: sync and async tasks, XCom by argument, a dataset outlet (with an
extra the downstream `orders_report` DAG sees)."""

from datetime import datetime

import anyio

from orchestrator import Dataset, dag, task
from orchestrator.operators import BashOperator


@dag(schedule="@daily", start_date=datetime(2024, 12, 1), catchup=False, tags=["example"])
def my_first_dag():
    @task
    def extract():
        return {"rows": 3}

    @task(retries=3, outlets=[Dataset("s3://warehouse/orders")])
    async def load(data: dict, outlet_events=None):
        await anyio.sleep(0.01)
        print(f"loaded {data['rows']} rows")
        # the orders_report DAG sees this on the dataset event
        outlet_events[Dataset("s3://warehouse/orders")].extra = {"rows": data["rows"]}
        return data["rows"]

    report = BashOperator(task_id="report", bash_command="echo 'run {{ run_id }} on {{ ds }}'")
    load(extract()) >> report


my_first_dag()
