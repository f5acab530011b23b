"""A custom sensor in ten lines: wait until a folder holds enough files, then use them."""

from datetime import datetime
from pathlib import Path

from orchestrator import DAG, task
from sensors import BaseSensor, PokeReturnValue


class FilesArrived(BaseSensor):
    template_fields = ("folder",)

    def __init__(self, folder: str, count: int, **kwargs):
        super().__init__(**kwargs)
        self.folder, self.count = folder, count

    def poke(self, context) -> PokeReturnValue:  # a plain def runs in a worker thread
        files = sorted(p.name for p in Path(self.folder).glob("*.csv"))
        return PokeReturnValue(len(files) >= self.count, files)


with DAG("custom_sensor", start_date=datetime(2024, 12, 1), tags=["example"]):
    arrived = FilesArrived(
        task_id="files_arrived",
        folder="/tmp/orchestrator-example/{{ ds }}",
        count=2,
        poke_interval=30,
        timeout=6 * 3600,
        soft_fail=True,
    )

    @task
    def load(files: list[str]):
        print(f"loading {files}")

    load(arrived.output)
