// A run's page: rows for instances that appear, and durations, follow the stream.
import { debounce, refreshParts } from "./ui.js";

const table = document.getElementById("run-tasks");
const runId = document.getElementById("run-meta").dataset.runId;
const refresh = debounce(() => refreshParts("#run-tasks", "#run-meta"), 300);

document.addEventListener("orchestrator:changes", (event) => {
  for (const change of event.detail) {
    if (change.run_id !== runId) continue;
    if (change.kind === "run") { refresh(); continue; }
    const row = table.querySelector(`tr[data-task-id="${CSS.escape(change.task_id)}"][data-map-index="${change.map_index}"]`);
    if (!row || change.state === "success" || change.state === "failed" || change.state === "running") refresh();
  }
});
document.addEventListener("orchestrator:reload", (event) => { event.preventDefault(); refresh(); });
