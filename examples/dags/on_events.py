"""Event-triggered examples: a run per big order, and a run whenever the ETL example fails.

Try them with the daemon up:

    orchestrator events put --source shop --detail-type "Order Placed" \
        --detail '{"order_id": "o-1", "total": 250}'
"""

from orchestrator import DAG, EventPattern
from orchestrator.operators import BashOperator

with DAG(
    "big_orders",
    schedule=EventPattern(
        {
            "source": ["shop"],
            "detail-type": ["Order Placed"],
            "detail": {"total": [{"numeric": [">", 100]}]},
        }
    ),
    tags=["example"],
):
    BashOperator(
        task_id="ship",
        bash_command="echo shipping {{ event.detail.order_id }} worth {{ event.detail.total }}",
    )

with DAG(
    "etl_failed",
    schedule=EventPattern(
        {
            "source": ["orchestrator"],
            "detail-type": ["DAG Run State Change"],
            "detail": {"dag_id": ["dag_etl_example"], "state": ["failed"]},
        }
    ),
    tags=["example"],
):
    BashOperator(task_id="page", bash_command="echo 'run {{ event.detail.run_id }} failed'")
