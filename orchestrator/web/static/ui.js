// Orchestrator's web UI: what every page shares. The page's one server-sent event stream,
// the JSON API with the page's cookie, the actions' buttons, and live state on any element
// that carries data-run-id / data-task-id / data-state.

export const STATES = JSON.parse(document.getElementById("states")?.textContent || "{}");
export const BY_CODE = Object.fromEntries(Object.entries(STATES).map(([s, [c]]) => [c, s]));
export const symbolOf = (state) => (STATES[state || "none"] || ["", "?"])[1];

const noticeBox = () => document.getElementById("notice");
let noticeTimer = 0;

export function notice(message, bad = false) {
  const box = noticeBox();
  if (!box) return;
  box.textContent = message;
  box.classList.toggle("bad", bad);
  box.setAttribute("role", bad ? "alert" : "status");
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { box.textContent = ""; }, bad ? 12000 : 4000);
}

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let doc = null;
  try { doc = await response.json(); } catch { doc = null; }
  if (!response.ok) {
    const message = (doc && doc.error) || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return doc;
}

export const enc = encodeURIComponent;
export const runPath = (dag, run) => `/api/v1/runs/${enc(run)}?dag_id=${enc(dag)}`;

// -- live state on marked elements --------------------------------------------------

function setState(el, state) {
  el.dataset.state = state;
  if (el.classList.contains("st")) el.textContent = symbolOf(state);
  for (const glyph of el.querySelectorAll(":scope .st, :scope .glyph")) glyph.textContent = symbolOf(state);
  for (const name of el.querySelectorAll(":scope .st-name, :scope .sname")) name.textContent = state;
  const labelled = el.matches("[aria-label]") ? el : el.querySelector("a[aria-label]");
  if (labelled) labelled.setAttribute("aria-label", labelled.getAttribute("aria-label").replace(/: [a-z_]+$/, `: ${state}`));
}

export function applyChange(change) {
  if (change.kind === "ti") {
    const sel = `[data-run-id="${CSS.escape(change.run_id)}"][data-task-id="${CSS.escape(change.task_id)}"]`;
    for (const el of document.querySelectorAll(sel)) {
      if (el.dataset.mapIndex !== undefined && +el.dataset.mapIndex !== change.map_index) continue;
      if (el.closest("#grid")) continue; // the grid draws its own
      if (el.classList.contains("actions-row")) continue;
      setState(el, change.state);
      const attempt = el.querySelector(".ti-try");
      if (attempt) attempt.textContent = change.try_number;
    }
  } else if (change.kind === "run") {
    const sel = `[data-run-id="${CSS.escape(change.run_id)}"]:not([data-task-id]):not(.actions-row):not(svg)`;
    for (const el of document.querySelectorAll(sel)) {
      if (el.closest("#grid")) continue;
      setState(el, change.state);
    }
  }
}

// -- the page's stream -------------------------------------------------------------------

export const live = {
  source: null,
  params() {
    const spec = document.body.dataset.stream || "";
    const params = new URLSearchParams(spec.includes("=") ? spec : "");
    const log = document.getElementById("log");
    if (log && +log.dataset.try > 0 && log.dataset.end !== undefined) {
      const d = log.dataset;
      params.set("log", [d.dagId, d.runId, d.taskId, d.mapIndex, d.try].join("/"));
      params.set("offset", d.end);
    }
    return params;
  },
  start() {
    if (this.source) this.source.close();
    const source = new EventSource(`/ui/stream?${this.params()}`);
    this.source = source;
    source.onmessage = (event) => {
      const changes = JSON.parse(event.data);
      for (const change of changes) applyChange(change);
      document.dispatchEvent(new CustomEvent("orchestrator:changes", { detail: changes }));
    };
    source.addEventListener("reload", () => {
      const asked = new CustomEvent("orchestrator:reload", { cancelable: true });
      if (document.dispatchEvent(asked)) location.reload();
    });
    source.addEventListener("log", (event) => {
      document.dispatchEvent(new CustomEvent("orchestrator:log", { detail: JSON.parse(event.data) }));
    });
    source.onopen = () => document.body.setAttribute("data-live", "open");
    source.onerror = () => document.body.setAttribute("data-live", "retrying");
  },
};

window.addEventListener("pagehide", () => live.source && live.source.close());

// Replace the parts of this page named by selectors with the same parts of the page as
// the server renders it now (one request; for lists whose rows come and go).
export async function refreshParts(...selectors) {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of selectors) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) now.replaceWith(document.importNode(next, true));
    else if (!now && next) {
      const main = document.getElementById("main");
      main.prepend(document.importNode(next, true));
    } else if (now && !next) now.remove();
  }
}

export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// -- actions -----------------------------------------------------------------------------

function scope(el) {
  const holder = el.closest("[data-run-id]") || el;
  return {
    dag: el.dataset.dagId || holder.dataset.dagId || document.querySelector("[data-dag-id]")?.dataset.dagId,
    run: el.dataset.runId || holder.dataset.runId,
    task: el.dataset.taskId || holder.dataset.taskId,
    mapIndex: +(el.dataset.mapIndex ?? holder.dataset.mapIndex ?? -1),
  };
}

const actions = {
  async pause(el) {
    const paused = el.getAttribute("aria-checked") !== "true";
    const doc = await api("PATCH", `/api/v1/dags/${enc(el.dataset.dagId)}`, { is_paused: paused });
    el.setAttribute("aria-checked", String(doc.is_paused));
    el.textContent = doc.is_paused ? "Paused" : "Active";
    notice(`${doc.dag_id} ${doc.is_paused ? "paused" : "unpaused"}`);
  },
  "open-trigger"() { openTrigger(); },
  "close-trigger"() { document.getElementById("trigger")?.close(); },
  async "clear-run"(el) {
    const s = scope(el);
    const doc = await api("POST", `/api/v1/runs/${enc(s.run)}/clear?dag_id=${enc(s.dag)}`, {});
    notice(`cleared ${doc.cleared.length} task instance(s) of ${s.run}`);
  },
  async "mark-run"(el) {
    const s = scope(el);
    const doc = await api("PATCH", runPath(s.dag, s.run), { state: el.dataset.state });
    notice(`run ${s.run} is ${doc.state}`);
  },
  async "clear-task"(el) {
    const s = scope(el);
    const body = { task_ids: [s.task], downstream: el.dataset.downstream === "1" };
    if (s.mapIndex >= 0) body.map_index = s.mapIndex;
    const doc = await api("POST", `/api/v1/runs/${enc(s.run)}/clear?dag_id=${enc(s.dag)}`, body);
    notice(`cleared ${doc.cleared.join(", ") || "nothing"}`);
  },
  async "mark-task"(el) {
    const s = scope(el);
    const path = `/api/v1/runs/${enc(s.run)}/tasks/${enc(s.task)}?dag_id=${enc(s.dag)}`;
    const doc = await api("PATCH", path, { state: el.dataset.state, map_index: s.mapIndex });
    notice(`${s.task} marked ${doc.state}`);
  },
  async "retry-alert"(el) {
    await api("POST", `/api/v1/alerts/${enc(el.dataset.alertId)}/retry`, {});
    notice("sent again");
    el.disabled = true;
  },
};
export const registerAction = (name, fn) => { actions[name] = fn; };

document.addEventListener("click", async (event) => {
  const el = event.target.closest("[data-action]");
  if (!el || el.tagName === "SELECT" || !actions[el.dataset.action]) return;
  event.preventDefault();
  if (el.disabled) return;
  el.disabled = true;
  try {
    await actions[el.dataset.action](el);
  } catch (error) {
    notice(error.message, true);
  } finally {
    if (el.dataset.action !== "retry-alert") el.disabled = false;
  }
});

document.addEventListener("change", (event) => {
  const el = event.target;
  if (el.dataset.action === "submit-on-change") el.form.submit();
});

// -- the trigger form --------------------------------------------------------------------

function paramValue(input) {
  const kind = input.dataset.type;
  if (input.tagName === "SELECT") return JSON.parse(input.value);
  if (kind === "boolean") return input.checked;
  if (kind === "integer" || kind === "number") return input.value === "" ? null : Number(input.value);
  if (kind === "json") return JSON.parse(input.value || "null");
  return input.value;
}

function fillConf() {
  const conf = {};
  for (const input of document.querySelectorAll("#trigger-form [data-param]")) {
    try { conf[input.dataset.param] = paramValue(input); } catch { /* shown on send */ }
  }
  document.getElementById("trigger-conf").value = JSON.stringify(conf, null, 2);
}

function openTrigger() {
  const dialog = document.getElementById("trigger");
  if (!dialog) return;
  document.getElementById("trigger-error").textContent = "";
  fillConf();
  dialog.showModal();
}

document.addEventListener("input", (event) => {
  if (event.target.matches("#trigger-form [data-param]")) fillConf();
});

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (form.id !== "trigger-form") return;
  event.preventDefault();
  const error = document.getElementById("trigger-error");
  error.textContent = "";
  let conf;
  try {
    conf = JSON.parse(document.getElementById("trigger-conf").value || "{}");
  } catch (e) {
    error.textContent = `conf: not JSON: ${e.message}`;
    return;
  }
  const body = { conf };
  const date = form.elements.logical_date.value.trim();
  const runId = form.elements.run_id.value.trim();
  if (date) body.logical_date = date;
  if (runId) body.run_id = runId;
  try {
    const run = await api("POST", `/api/v1/dags/${enc(form.dataset.dagId)}/runs`, body);
    document.getElementById("trigger").close();
    notice(`run ${run.run_id} queued`);
    document.dispatchEvent(new CustomEvent("orchestrator:triggered", { detail: run }));
  } catch (e) {
    error.textContent = e.message;
  }
});

live.start();
