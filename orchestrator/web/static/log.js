// A try's log: its tail first, earlier parts on demand, new lines as the try writes them
// (over the page's stream). Plain text in a <pre>, so selecting and copying work.
import { api, enc, live, notice } from "./ui.js";

const WINDOW = 256 * 1024;
const pre = document.getElementById("log");
const earlier = document.getElementById("log-earlier");
const status = document.getElementById("log-status");
const d = pre.dataset;
let start = 0;

function logPath(extra) {
  const map = +d.mapIndex >= 0 ? `&map_index=${d.mapIndex}` : "";
  return `/api/v1/runs/${enc(d.runId)}/tasks/${enc(d.taskId)}/logs?dag_id=${enc(d.dagId)}&try=${d.try}${map}${extra}`;
}

function atBottom() {
  return pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
}

async function tail() {
  if (+d.try <= 0) { status.textContent = "Waiting for the first try to start."; return; }
  const doc = await api("GET", logPath(`&length=${WINDOW}`));
  const attempt = doc.tries[0];
  pre.textContent = attempt.log;
  start = attempt.log_offset;
  d.end = String(attempt.log_end);
  earlier.hidden = start === 0;
  status.textContent = attempt.log_size ? `${attempt.log_size.toLocaleString()} bytes` : "The log is empty so far.";
  pre.scrollTop = pre.scrollHeight;
  performance.mark("log-tail-shown");
  live.start();  // follow from where the tail ends
}

earlier.addEventListener("click", async () => {
  const from = Math.max(0, start - WINDOW);
  const doc = await api("GET", logPath(`&offset=${from}&length=${start - from}`));
  const text = doc.tries[0].log;
  const height = pre.scrollHeight;
  pre.prepend(document.createTextNode(text));
  pre.scrollTop += pre.scrollHeight - height;
  start = from;
  earlier.hidden = start === 0;
});

document.addEventListener("orchestrator:log", (event) => {
  const chunk = event.detail;
  const follow = atBottom();
  pre.append(document.createTextNode(chunk.text));
  d.end = String(+d.end + new TextEncoder().encode(chunk.text).length);
  status.textContent = `${chunk.size.toLocaleString()} bytes`;
  if (follow) pre.scrollTop = pre.scrollHeight;
});

document.addEventListener("orchestrator:changes", (event) => {
  for (const change of event.detail) {
    if (change.kind !== "ti" || change.run_id !== d.runId || change.task_id !== d.taskId) continue;
    if (change.map_index !== +d.mapIndex) continue;
    if (d.latest === "true" && change.try_number > +d.try) {
      d.try = String(change.try_number);
      pre.setAttribute("aria-label", `Log of try ${change.try_number}`);
      const nav = document.querySelector("nav.tries");
      const map = +d.mapIndex >= 0 ? `map_index=${d.mapIndex}&` : "";
      for (const a of nav.querySelectorAll("a")) a.removeAttribute("aria-current");
      nav.querySelector(".hint")?.remove();
      nav.insertAdjacentHTML("beforeend", `${nav.querySelector("a") ? " · " : ""}<a href="?${map}try=${change.try_number}" aria-current="true">Try ${change.try_number}</a>`);
      tail().catch((e) => notice(e.message, true));
    }
  }
});

tail().catch((e) => notice(e.message, true));
