"""Sensors: tasks that wait for a condition (S3 keys, HTTP, files, time, other tasks).

The sensor base and the built-in sensors build on the operator base in
``orchestrator`` and hand their waiting to the trigger engine.
"""

__all__: list[str] = []
