// The DAG list: search as you type; a DAG's row follows its runs (that row alone is asked
// for again); the list and the import errors banner follow the DAGs folder.
import { debounce, enc, refreshParts } from "./ui.js";

const search = document.getElementById("dag-search");
const count = document.getElementById("dag-count");

function filter() {
  const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  let n = 0;
  for (const row of document.querySelectorAll("#dag-rows [data-dag-id][data-search]")) {
    const hit = words.every((w) => row.dataset.search.includes(w));
    row.hidden = !hit;
    if (hit) n += 1;
  }
  count.textContent = `${n} DAG${n === 1 ? "" : "s"}`;
  const url = new URL(location.href);
  if (search.value) url.searchParams.set("q", search.value); else url.searchParams.delete("q");
  history.replaceState(null, "", url);
}
search.addEventListener("input", filter);

const refreshAll = debounce(async () => {
  await refreshParts("#dag-table", "#import-banner");
  filter();
}, 300);

// A row is brought up to date in place: its cells' contents are replaced, but its paused
// switch only takes the new state, so a click on it is never lost to a row swapped
// under the pointer.
function update(row, fresh) {
  const now = row.querySelectorAll(":scope > [role=cell]");
  const next = fresh.querySelectorAll(":scope > [role=cell]");
  next.forEach((cell, i) => {
    const button = now[i]?.querySelector("button[role=switch]");
    const nextButton = cell.querySelector("button[role=switch]");
    if (button && nextButton) {
      button.setAttribute("aria-checked", nextButton.getAttribute("aria-checked"));
      button.textContent = nextButton.textContent;
    } else if (now[i] && now[i].innerHTML !== cell.innerHTML) {
      now[i].innerHTML = cell.innerHTML;
    }
  });
}

const stale = new Set();
const refreshRows = debounce(async () => {
  const ids = [...stale];
  stale.clear();
  for (const id of ids) {
    const row = document.querySelector(`#dag-rows .dagrow[data-dag-id="${CSS.escape(id)}"]`);
    if (!row) continue;
    const response = await fetch(`/ui/dag-row/${enc(id)}`, { credentials: "same-origin" });
    if (!response.ok) continue;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text();
    const fresh = holder.querySelector(".dagrow");
    if (fresh) update(row, fresh);
  }
}, 250);

document.addEventListener("orchestrator:changes", (event) => {
  for (const change of event.detail) {
    if (change.kind === "dags" && change.dag_id === undefined) refreshAll();
    else if (change.kind === "run" || (change.kind === "dags" && change.dag_id)) {
      stale.add(change.dag_id);
      refreshRows();
    }
  }
});
document.addEventListener("orchestrator:reload", (event) => { event.preventDefault(); refreshAll(); });
