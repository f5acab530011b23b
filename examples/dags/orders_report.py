"""Dataset-triggered example: runs whenever `my_first_dag` updates the orders dataset."""

from datetime import datetime

from orchestrator import Dataset, dag, task

ORDERS = Dataset("s3://warehouse/orders")


@dag(schedule=[ORDERS], start_date=datetime(2024, 12, 1), tags=["example"])
def orders_report():
    @task
    def report(**context):
        for event in context["triggering_dataset_events"].get(ORDERS.uri, []):
            print(
                f"{event.uri} updated by {event.source_dag_id} at {event.timestamp}: {event.extra}"
            )

    report()


orders_report()
