// A list page (datasets, events): when its stream says something it lists changed, the
// page's lists are asked for again, at most a few times a second.
import { debounce, refreshParts } from "./ui.js";

const parts = (document.body.dataset.refresh || "").split(",").map((s) => s.trim()).filter(Boolean);
const refresh = debounce(() => refreshParts(...parts), 400);
document.addEventListener("orchestrator:changes", refresh);
document.addEventListener("orchestrator:reload", (event) => { event.preventDefault(); refresh(); });
