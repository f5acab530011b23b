// The grid: tasks (rows, groups foldable) by runs (columns, oldest on the left). Its data
// comes in one request; only the cells in view are in the page, drawn again on scroll;
// live changes update the data and what is in view.
import { BY_CODE, STATES, api, debounce, enc, notice, runPath, symbolOf } from "./ui.js";

const CELL = 20;
const NAME = 240;
const HEAD = 64;
const PRIORITY = ["failed", "upstream_failed", "up_for_retry", "running", "deferred", "queued",
  "scheduled", "none", "success", "skipped", "removed"];
const RANK = Object.fromEntries(PRIORITY.map((s, i) => [STATES[s][0], i]));

const scroller = document.getElementById("grid");
const canvas = document.getElementById("grid-canvas");
const head = document.getElementById("grid-head");
const panel = document.getElementById("panel");
const dagId = scroller.dataset.dagId;
const foldKey = `orchestrator:folded:${dagId}`;

let runs = [];          // oldest first
let rows = [];          // every row, groups before their members
let cells = {};         // row id -> array of state codes, one per run
let counts = {};        // mapped task id -> instances per run
let shown = [];         // the rows not inside a folded group
let column = new Map(); // run id -> column
let folded = new Set(JSON.parse(localStorage.getItem(foldKey) || "[]"));
let active = { row: 0, col: 0 };  // row -1: the runs' header
let selected = null;
let framed = false;

function worst(codes) {
  let best = "-";
  for (const c of codes) if (c !== "-" && (best === "-" || (RANK[c] ?? 99) < (RANK[best] ?? 99))) best = c;
  return best;
}

async function load() {
  const wanted = document.getElementById("grid-runs").value;
  const response = await fetch(`/ui/grid/${enc(dagId)}?runs=${wanted}`, { credentials: "same-origin" });
  if (!response.ok) { notice(`the grid could not load: ${response.status}`, true); return; }
  const data = await response.json();
  performance.mark("grid-data");
  runs = data.runs;
  rows = data.rows;
  counts = data.counts;
  cells = Object.fromEntries(Object.entries(data.cells).map(([k, v]) => [k, Array.from(v)]));
  column = new Map(runs.map((r, i) => [r.run_id, i]));
  layout();
  if (!performance.getEntriesByName("grid-rendered").length) {
    active = { row: 0, col: Math.max(0, runs.length - 1) };
    scroller.scrollLeft = scroller.scrollWidth;
  }
  draw();
  if (!performance.getEntriesByName("grid-rendered").length) performance.mark("grid-rendered");
  scroller.dataset.loaded = "true";
}

function layout() {
  const hidden = new Set();
  shown = [];
  for (const row of rows) {
    if (row.parent && (hidden.has(row.parent) || folded.has(row.parent))) { hidden.add(row.id); continue; }
    shown.push(row);
  }
  canvas.style.width = `${NAME + runs.length * CELL + 8}px`;
  canvas.style.height = `${HEAD + shown.length * CELL + 4}px`;
  scroller.setAttribute("aria-rowcount", String(shown.length + 1));
  scroller.setAttribute("aria-colcount", String(runs.length + 1));
  active.row = Math.min(active.row, shown.length - 1);
  active.col = Math.min(active.col, runs.length - 1);
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function cellId(r, c) { return r < 0 ? `rh-${c}` : `c-${r}-${c}`; }

function draw() {
  framed = false;
  const width = scroller.clientWidth;
  const height = scroller.clientHeight;
  const left = scroller.scrollLeft;
  const top = scroller.scrollTop;
  const c0 = Math.max(0, Math.floor(left / CELL) - 2);
  const c1 = Math.min(runs.length, Math.ceil((left + width - NAME) / CELL) + 2);
  const r0 = Math.max(0, Math.floor(top / CELL) - 2);
  const r1 = Math.min(shown.length, Math.ceil((top + height - HEAD) / CELL) + 2);
  let top_html = '<div class="corner" role="columnheader">Task</div>';
  for (let c = c0; c < c1; c++) {
    const run = runs[c];
    const on = active.row === -1 && active.col === c ? " active" : "";
    top_html += `<div role="columnheader" id="${cellId(-1, c)}" class="rh st c${on}" data-run-id="${esc(run.run_id)}" data-state="${run.state}" aria-colindex="${c + 2}" aria-label="run ${esc(run.run_id)}: ${run.state}" title="${esc(run.run_id)} (${run.state})" style="left:${NAME + c * CELL}px;height:${HEAD - 24}px;top:auto;line-height:normal">${symbolOf(run.state)}</div>`;
  }
  head.innerHTML = top_html;
  const parts = [];
  for (let r = r0; r < r1; r++) {
    const row = shown[r];
    const codes = cells[row.id] || [];
    const fold = row.group
      ? `<button type="button" class="fold" tabindex="-1" data-fold="${esc(row.id)}" aria-expanded="${!folded.has(row.id)}" aria-label="${folded.has(row.id) ? "Expand" : "Collapse"} group ${esc(row.id)}">${folded.has(row.id) ? "▸" : "▾"}</button>`
      : '<span style="display:inline-block;width:20px"></span>';
    const mapped = row.mapped ? '<span class="mapped">[ ]</span>' : "";
    let html = `<div class="grow" role="row" aria-rowindex="${r + 2}" style="top:${HEAD + r * CELL}px;width:${NAME + runs.length * CELL}px"><div class="name" role="rowheader" style="padding-left:${row.depth * 14}px" title="${esc(row.id)}">${fold}${row.group ? "<b>" : ""}${esc(row.label)}${row.group ? "</b>" : ""}${mapped}</div>`;
    for (let c = c0; c < c1; c++) {
      const code = codes[c] || "-";
      const state = code === "-" ? "absent" : BY_CODE[code];
      const glyph = code === "-" ? "" : STATES[state][1];
      const n = row.mapped && counts[row.id] && counts[row.id][c] ? `<span class="n">${counts[row.id][c]}</span>` : "";
      const on = active.row === r && active.col === c ? " active" : "";
      const label = `${row.id}, run ${runs[c].run_id}: ${code === "-" ? "no instance" : state}${n ? `, ${counts[row.id][c]} instances` : ""}`;
      html += `<div class="c${on}" role="gridcell" id="${cellId(r, c)}" aria-colindex="${c + 2}" data-task-id="${esc(row.id)}" data-run-id="${esc(runs[c].run_id)}" data-state="${state}" aria-label="${esc(label)}" style="left:${NAME + c * CELL}px">${glyph}${n}</div>`;
    }
    parts.push(html + "</div>");
  }
  for (const old of canvas.querySelectorAll(".grow")) old.remove();
  canvas.insertAdjacentHTML("beforeend", parts.join(""));
  const id = cellId(active.row, active.col);
  if (document.getElementById(id)) scroller.setAttribute("aria-activedescendant", id);
  else scroller.removeAttribute("aria-activedescendant");
}

function redraw() {
  if (!framed) { framed = true; requestAnimationFrame(draw); }
}

function reveal() {
  const x = NAME + active.col * CELL;
  const y = HEAD + active.row * CELL;
  if (x - NAME < scroller.scrollLeft) scroller.scrollLeft = x - NAME;
  if (x + CELL > scroller.scrollLeft + scroller.clientWidth) scroller.scrollLeft = x + CELL - scroller.clientWidth;
  if (active.row >= 0) {
    if (y - HEAD < scroller.scrollTop) scroller.scrollTop = y - HEAD;
    if (y + CELL > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = y + CELL - scroller.clientHeight;
  }
  draw();
}

scroller.addEventListener("scroll", redraw, { passive: true });
window.addEventListener("resize", redraw);

scroller.addEventListener("keydown", (event) => {
  const moves = {
    ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0],
    PageUp: [-10, 0], PageDown: [10, 0],
  };
  if (event.key in moves) {
    const [dr, dc] = moves[event.key];
    active.row = Math.max(-1, Math.min(shown.length - 1, active.row + dr));
    active.col = Math.max(0, Math.min(runs.length - 1, active.col + dc));
  } else if (event.key === "Home") {
    active.col = 0;
  } else if (event.key === "End") {
    active.col = runs.length - 1;
  } else if (event.key === "Enter" || event.key === " ") {
    select(active.row, active.col);
  } else {
    return;
  }
  event.preventDefault();
  reveal();
});

canvas.addEventListener("click", (event) => {
  const fold = event.target.closest("[data-fold]");
  if (fold) { toggle(fold.dataset.fold); return; }
  const cell = event.target.closest("[id^='c-'], [id^='rh-']");
  if (!cell) return;
  const [kind, a, b] = cell.id.split("-");
  if (kind === "rh") active = { row: -1, col: +a }; else active = { row: +a, col: +b };
  scroller.focus();
  draw();
  select(active.row, active.col);
});

// -- the side panel -----------------------------------------------------------------------

const dl = (pairs) => `<dl>${pairs.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")}</dl>`;
const stateText = (s) => `<span class="st" data-state="${s}" aria-hidden="true">${symbolOf(s)}</span> ${s}`;
const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");

async function select(r, c) {
  if (!runs[c]) return;
  const run = runs[c];
  selected = { r, c, run: run.run_id, task: r >= 0 ? shown[r].id : null };
  const runHref = `/dags/${enc(dagId)}/runs/${enc(run.run_id)}`;
  if (r < 0) {
    panel.innerHTML = `<h2>Run ${esc(run.run_id)}</h2>${dl([
      ["State", stateText(run.state)], ["Type", esc(run.run_type)],
      ["Logical date", when(run.logical_date)], ["Started", when(run.start_date)], ["Ended", when(run.end_date)],
    ])}<p><a href="${runHref}">Open the run</a></p>
      <div class="actions-row" data-dag-id="${esc(dagId)}" data-run-id="${esc(run.run_id)}">
      <button type="button" data-action="clear-run">Clear the run</button>
      <button type="button" data-action="mark-run" data-state="success">Mark success</button>
      <button type="button" data-action="mark-run" data-state="failed">Mark failed</button></div>`;
    return;
  }
  const row = shown[r];
  if (row.group) {
    const members = rows.filter((m) => m.parent === row.id);
    panel.innerHTML = `<h2>Group ${esc(row.id)}</h2><p>Run <a href="${runHref}">${esc(run.run_id)}</a></p>
      <ul>${members.map((m) => `<li>${stateText(BY_CODE[(cells[m.id] || [])[c]] || "none")} ${esc(m.label)}</li>`).join("")}</ul>
      <button type="button" id="panel-fold" aria-expanded="${!folded.has(row.id)}">${folded.has(row.id) ? "Expand" : "Collapse"} the group</button>`;
    document.getElementById("panel-fold").onclick = () => { toggle(row.id); select(r, c); };
    return;
  }
  panel.innerHTML = `<h2>${esc(row.id)}</h2><p class="hint">Loading…</p>`;
  let doc;
  try { doc = await api("GET", runPath(dagId, run.run_id)); } catch (e) { panel.innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
  if (!selected || selected.run !== run.run_id || selected.task !== row.id) return;
  const instances = doc.tasks.filter((t) => t.task_id === row.id);
  const taskHref = (t) => `${runHref}/tasks/${enc(row.id)}${t.map_index >= 0 ? `?map_index=${t.map_index}` : ""}`;
  const actionsFor = (t) => `<div class="actions-row" data-dag-id="${esc(dagId)}" data-run-id="${esc(run.run_id)}" data-task-id="${esc(row.id)}" data-map-index="${t.map_index}">
      <button type="button" data-action="clear-task">Clear</button>
      <button type="button" data-action="clear-task" data-downstream="1">Clear with downstream</button>
      <button type="button" data-action="mark-task" data-state="success">Mark success</button>
      <button type="button" data-action="mark-task" data-state="failed">Mark failed</button></div>`;
  let body = "";
  if (!instances.length) body = "<p>No instance in this run yet.</p>";
  else if (instances.length === 1 && instances[0].map_index < 0) {
    const t = instances[0];
    body = dl([["State", stateText(t.state)], ["Try", t.try_number], ["Started", when(t.start_date)],
      ["Ended", when(t.end_date)], ["Duration", t.duration == null ? "" : `${t.duration.toFixed(2)} s`]])
      + `<p><a href="${taskHref(t)}">Log, XComs and details</a></p>${actionsFor(t)}`;
  } else {
    body = `<p>${instances.length} mapped instances</p><ul>${instances.map((t) => `<li><a href="${taskHref(t)}">[${esc(t.rendered_map_index ?? t.map_index)}]</a> ${stateText(t.state)}, try ${t.try_number}</li>`).join("")}</ul>${actionsFor({ map_index: -1 })}`;
  }
  panel.innerHTML = `<h2>${esc(row.id)}</h2><p>Run <a href="${runHref}">${esc(run.run_id)}</a></p>${body}`;
}

function toggle(id) {
  if (folded.has(id)) folded.delete(id); else folded.add(id);
  localStorage.setItem(foldKey, JSON.stringify([...folded]));
  layout();
  draw();
}

// -- live --------------------------------------------------------------------------------

const refetch = debounce(load, 250);
const reselect = debounce(() => selected && select(selected.r, selected.c), 200);

function regroup(taskId, c) {
  let parent = rows.find((r) => r.id === taskId)?.parent;
  while (parent) {
    const members = rows.filter((r) => r.parent === parent);
    cells[parent][c] = worst(members.map((m) => (cells[m.id] || [])[c] || "-"));
    parent = rows.find((r) => r.id === parent)?.parent;
  }
}

document.addEventListener("orchestrator:changes", (event) => {
  let dirty = false;
  for (const change of event.detail) {
    if (change.dag_id !== dagId) {
      if (change.kind === "dags" && change.dag_id === undefined) refetch();
      continue;
    }
    if (change.kind === "run") {
      if (change.cleared) { refetch(); continue; }
      const c = column.get(change.run_id);
      if (c === undefined) {
        runs.push({ run_id: change.run_id, state: change.state, run_type: change.run_type,
          logical_date: change.logical_date, start_date: change.start_date, end_date: change.end_date });
        column.set(change.run_id, runs.length - 1);
        for (const row of rows) (cells[row.id] = cells[row.id] || []).push("-");
        for (const id of Object.keys(counts)) counts[id].push(0);
        if (runs.length > +document.getElementById("grid-runs").value) { refetch(); continue; }
        const atEnd = scroller.scrollLeft + scroller.clientWidth >= scroller.scrollWidth - CELL * 2;
        layout();
        if (atEnd) scroller.scrollLeft = scroller.scrollWidth;
      } else {
        Object.assign(runs[c], { state: change.state, start_date: change.start_date, end_date: change.end_date });
      }
      dirty = true;
    } else if (change.kind === "ti") {
      const c = column.get(change.run_id);
      const row = rows.find((r) => r.id === change.task_id);
      if (c === undefined || !row) continue;
      if (row.mapped || change.map_index >= 0) { refetch(); continue; }
      cells[row.id][c] = STATES[change.state][0];
      regroup(row.id, c);
      dirty = true;
      if (selected && selected.run === change.run_id) reselect();
    }
  }
  if (dirty) redraw();
});

document.addEventListener("orchestrator:reload", (event) => { event.preventDefault(); load(); });
document.getElementById("grid-runs").addEventListener("change", (event) => {
  const url = new URL(location.href);
  url.searchParams.set("runs", event.target.value);
  history.replaceState(null, "", url);
  load();
});

load();
