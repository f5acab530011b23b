"""The async shell: the scheduler, the executor, timers, the task context."""
