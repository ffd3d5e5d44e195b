// The dashboard: one page, hash routes, every figure read from the JSON API
// with the key the user gave (kept in sessionStorage only). No framework.
import { readEventStream, StreamRefused, StreamUnavailable } from "./events.js";

const KEY_STORAGE = "taskservice.apiKey";
const POLL_MS = 2000; // the list's refresh while no event stream is available
const AGGREGATES_MS = 15000; // counts, chart and workers on the overview
const PAGES_MS = 10000; // queues, workers and schedules pages
const LIST_REFETCH_MS = 2000; // at most one list re-read per this, whatever the event rate
const STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"];
const FINAL = new Set(["completed", "failed", "cancelled"]);
// The service's own jobs (registry.INTERNAL_QUEUE): shown with the queues, left
// out of the totals, as GET /tasks and the chart leave them out.
const INTERNAL_QUEUE = "taskservice";

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  me: null, // {name, scopes, open_mode}
  view: null, // the current view: {onTaskEvent?, poll?, stop?}
  live: "off", // "stream" | "polling" | "off"
  streamAbort: null,
  lastEventId: null,
  pollTimer: null,
  cursors: [], // the list's previous pages' cursors
};

// ---- small helpers -------------------------------------------------------

/** An element: h("a", {href: "#"}, "text", child...). Text is always text, never HTML. */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "line", "text", "title", "g"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces `el`'s children, skipping the null/false of conditional parts. */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

const can = (scope) => !!state.me && (state.me.scopes.includes(scope) || state.me.scopes.includes("admin"));

function formatTime(value) {
  if (!value) return "—";
  const d = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.round((seconds % 86400) / 3600)} h`;
}

const json = (value) => JSON.stringify(value, null, 2);
const statusBadge = (status) => h("span", { class: `status status-${status}` }, status.replace("_", " "));
const taskLink = (id) => h("a", { href: `#/tasks/${id}`, class: "task-link" }, `#${id}`);

function scrollTable(label, head, rows) {
  return h(
    "div",
    { class: "table-scroll", tabindex: 0, role: "region", "aria-label": label },
    h("table", {}, h("caption", { class: "visually-hidden" }, label),
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)),
  );
}

function announce(text) {
  document.getElementById("announcer").textContent = text;
}

function showError(container, error) {
  fill(container, h("p", { class: "error", role: "alert" }, error.message || String(error)));
}

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const payload = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = payload && Array.isArray(payload.detail) ? payload.detail : [];
    const message = detail.length
      ? detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}${d.loc && d.loc.length > 1 ? ": " : ""}${d.msg}`).join("; ")
      : `${method} ${path} answered ${response.status}`;
    if (response.status === 401) askForKey("The service refused the key: " + message);
    throw new ApiError(response.status, message, detail);
  }
  return payload;
}

// ---- the key -------------------------------------------------------------

function askForKey(message = "") {
  stopLive();
  state.me = null;
  document.getElementById("key-form").hidden = false;
  fill(document.getElementById("view"));
  document.getElementById("key-error").textContent = message;
  document.getElementById("forget-key").hidden = !state.key;
  document.getElementById("who").textContent = "";
  document.getElementById("key-input").focus();
}

async function identify() {
  try {
    state.me = await api("/me");
  } catch (error) {
    if (error.status !== 401) throw error;
    return false;
  }
  document.getElementById("key-form").hidden = true;
  document.getElementById("who").textContent = state.me.open_mode
    ? "Open mode (no key needed on loopback)"
    : `Key: ${state.me.name} (${state.me.scopes.join(", ")})`;
  document.getElementById("forget-key").hidden = state.me.open_mode;
  for (const link of document.querySelectorAll("[data-needs]")) link.hidden = !can(link.dataset.needs);
  return true;
}

async function useKey(event) {
  event.preventDefault();
  const input = document.getElementById("key-input");
  state.key = input.value.trim();
  sessionStorage.setItem(KEY_STORAGE, state.key);
  input.value = "";
  if (await identify()) {
    startLive();
    route();
  } else {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    document.getElementById("key-error").textContent = "The service refused this key (unknown or revoked).";
  }
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  askForKey("Key forgotten.");
}

// ---- confirmation --------------------------------------------------------

function confirmAction(title, text, confirmLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = confirmLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}

// ---- live updates --------------------------------------------------------

function setLive(mode) {
  state.live = mode;
  const text = { stream: "Live: event stream", polling: "Live: refreshing every 2 s", off: "" }[mode];
  const el = document.getElementById("live");
  el.dataset.mode = mode;
  el.textContent = text;
}

function startPolling() {
  setLive("polling");
  clearInterval(state.pollTimer);
  state.pollTimer = setInterval(() => {
    if (document.visibilityState === "visible" && state.view && state.view.poll) state.view.poll();
  }, POLL_MS);
}

async function startLive() {
  stopLive();
  const controller = new AbortController();
  state.streamAbort = controller;
  while (!controller.signal.aborted) {
    try {
      setLive("stream");
      clearInterval(state.pollTimer);
      await readEventStream("/events", {
        headers: authHeaders(),
        lastEventId: state.lastEventId,
        signal: controller.signal,
        onEvent: handleStreamEvent,
      });
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof StreamUnavailable || error instanceof StreamRefused) {
        startPolling();
        return;
      }
      startPolling(); // a broken stream: poll until it is back
    }
    await new Promise((resolve) => setTimeout(resolve, 1000)); // then reconnect, resuming
  }
}

function stopLive() {
  if (state.streamAbort) state.streamAbort.abort();
  state.streamAbort = null;
  clearInterval(state.pollTimer);
  setLive("off");
}

function handleStreamEvent({ event, id, data }) {
  if (id !== null && event === "status") state.lastEventId = id;
  if (!data || typeof data !== "object" || data.id === undefined) return;
  if (state.view && state.view.onTaskEvent) state.view.onTaskEvent(event, data);
}

/** A function that runs `fn` at most once per `ms` (the last call is never lost). */
function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, wait);
    }
  };
}

// ---- task tables -----------------------------------------------------------

function taskRow(task) {
  return h(
    "tr",
    { dataset: { taskId: task.id } },
    h("td", {}, taskLink(task.id)),
    h("td", {}, task.type),
    h("td", { class: "status-cell" }, statusBadge(task.status)),
    h("td", {}, task.queue),
    h("td", {}, formatTime(task.created_at)),
    h("td", {}, formatTime(task.finished_at)),
  );
}

const TASK_HEAD = ["ID", "Type", "Status", "Queue", "Created", "Finished"];

/** A live task table: rows patched from events, re-read (throttled) when new tasks appear. */
function liveTaskTable(label, load, filters = {}) {
  const box = h("div", { class: "task-table" });
  let ids = new Set();
  const refresh = async () => {
    try {
      const page = await load();
      ids = new Set(page.items.map((t) => t.id));
      fill(box, 
        page.items.length
          ? scrollTable(label, TASK_HEAD, page.items.map(taskRow))
          : h("p", { class: "empty" }, "No tasks."),
      );
      return page;
    } catch (error) {
      showError(box, error);
      return null;
    }
  };
  const refetch = throttle(refresh, LIST_REFETCH_MS);
  const onTaskEvent = (event, data) => {
    if (event !== "status") return;
    if (ids.has(data.id)) {
      const cell = box.querySelector(`tr[data-task-id="${data.id}"] .status-cell`);
      if (cell && data.status) fill(cell, statusBadge(data.status));
      if (FINAL.has(data.status)) refetch(); // its finish time
    } else if (filters.firstPage !== false && matches(filters, data)) {
      refetch();
    }
  };
  return { box, refresh, onTaskEvent, poll: refresh };
}

function matches(filters, data) {
  return (!filters.type || filters.type === data.type)
    && (!filters.queue || filters.queue === data.queue)
    && (!filters.status || filters.status === data.status);
}

// ---- overview ------------------------------------------------------------

function throughputChart(minutes) {
  // Drawn at the width it gets (no stretching of its text); redrawn on each refresh.
  const width = Math.max(280, Math.round(document.getElementById("view").clientWidth - 34));
  const height = 160;
  const top = 12;
  const bottom = 20;
  const left = 34;
  const plot = height - top - bottom;
  const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
  const barWidth = (width - left) / Math.max(1, minutes.length);
  const completed = minutes.reduce((n, m) => n + m.completed, 0);
  const failed = minutes.reduce((n, m) => n + m.failed, 0);
  const summary = `Tasks per minute over the last ${minutes.length} minutes: ${completed} completed, ${failed} failed; busiest minute ${max}.`;
  const bars = minutes.map((m, i) => {
    const x = left + i * barWidth + 1;
    const w = Math.max(1, barWidth - 2);
    const okHeight = (m.completed / max) * plot;
    const failHeight = (m.failed / max) * plot;
    return h("g", {},
      h("title", {}, `${formatTime(m.minute)}: ${m.completed} completed, ${m.failed} failed`),
      h("rect", { class: "bar-completed", x, width: w, y: top + plot - okHeight, height: okHeight }),
      h("rect", { class: "bar-failed", x, width: w, y: top + plot - okHeight - failHeight, height: failHeight }));
  });
  const svg = h(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, class: "chart" },
    h("line", { class: "axis", x1: left, x2: width, y1: top + plot, y2: top + plot }),
    h("line", { class: "grid", x1: left, x2: width, y1: top, y2: top }),
    h("text", { class: "tick", x: left - 4, y: top + 4, "text-anchor": "end" }, String(max)),
    h("text", { class: "tick", x: left - 4, y: top + plot, "text-anchor": "end" }, "0"),
    h("text", { class: "tick", x: left, y: height - 4 }, `${minutes.length} min ago`),
    h("text", { class: "tick", x: width, y: height - 4, "text-anchor": "end" }, "now"),
    bars,
  );
  return h("figure", { class: "card chart-card" },
    h("figcaption", {}, h("strong", {}, "Tasks per minute, last hour"), " ",
      h("span", { class: "legend legend-completed" }, `completed ${completed}`), " ",
      h("span", { class: "legend legend-failed" }, `failed ${failed}`)),
    svg);
}

function statusCounts(queues) {
  const totals = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const q of queues) if (q.queue !== INTERNAL_QUEUE) for (const s of STATUSES) totals[s] += q[s];
  return h("ul", { class: "counts", "aria-label": "Tasks per status" },
    STATUSES.map((s) => h("li", { class: `count count-${s}`, dataset: { status: s } },
      h("span", { class: "count-value" }, String(totals[s])),
      h("span", { class: "count-label" }, s.replace("_", " ")))));
}

function queueTable(queues) {
  if (!queues.length) return h("p", { class: "empty" }, "No queues yet: no task was submitted.");
  return scrollTable("Queues", ["Queue", "Pending", "Running", "Completed", "Failed", "Cancelled", "Oldest pending waits"],
    queues.map((q) => h("tr", { dataset: { queue: q.queue } },
      h("th", { scope: "row" }, q.queue, q.queue === INTERNAL_QUEUE ? h("span", { class: "tag" }, "service's own") : null), h("td", {}, q.pending), h("td", {}, q.in_progress),
      h("td", {}, q.completed), h("td", {}, q.failed), h("td", {}, q.cancelled),
      h("td", {}, formatSeconds(q.oldest_pending_seconds)))));
}

function workerTable(workers) {
  if (!workers.length) return h("p", { class: "empty" }, "No worker is registered.");
  return scrollTable("Workers",
    ["Worker", "Host (pid)", "Queues", "Concurrency", "Last heartbeat", "State", "Running tasks"],
    workers.map((w) => h("tr", {},
      h("th", { scope: "row" }, `#${w.id}`),
      h("td", {}, w.hostname ? `${w.hostname} (${w.pid})` : "–"),
      h("td", {}, w.queues ? w.queues.join(", ") : "all"),
      h("td", {}, w.concurrency ?? "–"),
      h("td", {}, `${formatTime(w.last_heartbeat)} (${formatSeconds(w.heartbeat_age_seconds)} ago)`),
      h("td", {}, w.alive ? "alive" : "silent"), h("td", {}, w.running))));
}

function overviewView(view) {
  const counts = h("div", { class: "aggregates" }, h("p", {}, "Loading…"));
  const table = liveTaskTable("Newest tasks", () => api("/tasks?limit=15"));
  fill(view, 
    h("h1", {}, "Overview"),
    counts,
    h("section", { "aria-labelledby": "newest-title" },
      h("h2", { id: "newest-title" }, "Newest tasks ", h("a", { href: "#/tasks", class: "small" }, "all tasks")),
      table.box),
  );
  const loadAggregates = async () => {
    try {
      const [queues, throughput, workers] = await Promise.all([
        api("/queues"), api("/stats/throughput?minutes=60"), api("/workers"),
      ]);
      const alive = workers.filter((w) => w.alive).length;
      fill(counts, 
        statusCounts(queues),
        h("p", { class: "workers-alive", dataset: { alive } }, `Workers alive: ${alive}`),
        throughputChart(throughput.minutes),
        h("section", { "aria-labelledby": "queues-title" }, h("h2", { id: "queues-title" }, "Queues"), queueTable(queues)),
      );
    } catch (error) {
      showError(counts, error);
    }
  };
  loadAggregates();
  table.refresh();
  const timer = setInterval(() => document.visibilityState === "visible" && loadAggregates(), AGGREGATES_MS);
  return { onTaskEvent: table.onTaskEvent, poll: table.poll, stop: () => clearInterval(timer) };
}

// ---- task list -----------------------------------------------------------

function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const FILTERS = ["status", "type", "queue", "created_after", "created_before", "batch_id"];

function field(label, input, hint) {
  const id = input.id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function tasksView(view, params) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || ""]));
  const cursor = params.get("cursor");
  if (!cursor) state.cursors = [];
  const form = h("form", { class: "filters card", "aria-label": "Filter tasks" },
    field("Status", h("select", { id: "filter-status", name: "status" },
      h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s.replace("_", " "))))),
    field("Type", h("input", { id: "filter-type", name: "type", value: filters.type, list: "task-type-names", autocomplete: "off" })),
    field("Queue", h("input", { id: "filter-queue", name: "queue", value: filters.queue, autocomplete: "off" })),
    field("Created after", h("input", { id: "filter-created-after", name: "created_after", type: "datetime-local", value: toLocalInput(filters.created_after) })),
    field("Created before", h("input", { id: "filter-created-before", name: "created_before", type: "datetime-local", value: toLocalInput(filters.created_before) })),
    field("Batch", h("input", { id: "filter-batch", name: "batch_id", type: "number", min: 1, value: filters.batch_id, inputmode: "numeric" })),
    h("div", { class: "buttons" },
      h("button", { type: "submit" }, "Apply filters"),
      h("a", { href: "#/tasks", class: "button secondary" }, "Clear")),
    h("datalist", { id: "task-type-names" }),
  );
  api("/task-types").then((types) => {
    fill(form.querySelector("#task-type-names"), ...Object.keys(types).map((n) => h("option", { value: n })));
  }).catch(() => {});
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const query = new URLSearchParams();
    for (const f of FILTERS) {
      let value = String(data.get(f) || "").trim();
      if (f.startsWith("created_")) value = toIso(value);
      if (value) query.set(f, value);
    }
    location.hash = `#/tasks${query.size ? "?" + query : ""}`;
  });
  const query = new URLSearchParams({ limit: "25" });
  for (const f of FILTERS) if (filters[f]) query.set(f, filters[f]);
  if (cursor) query.set("cursor", cursor);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const table = liveTaskTable("Tasks", async () => {
    const page = await api(`/tasks?${query}`);
    const base = new URLSearchParams(query);
    base.delete("limit");
    const pageLink = (c) => {
      const q = new URLSearchParams(base);
      if (c) q.set("cursor", c);
      else q.delete("cursor");
      return `#/tasks${q.size ? "?" + q : ""}`;
    };
    fill(pager, 
      cursor ? h("a", { href: pageLink(null), class: "button secondary" }, "Newest") : null,
      cursor && state.cursors.length ? h("a", {
        href: pageLink(state.cursors[state.cursors.length - 1]), class: "button secondary",
        onclick: () => state.cursors.pop(),
      }, "Newer") : null,
      page.next_cursor ? h("a", {
        href: pageLink(page.next_cursor), class: "button secondary", rel: "next",
        onclick: () => cursor && state.cursors.push(cursor),
      }, "Older") : null,
    );
    return page;
  }, { ...filters, firstPage: !cursor });
  fill(view, h("h1", {}, "Tasks"), form, table.box, pager);
  table.refresh();
  return { onTaskEvent: table.onTaskEvent, poll: table.poll };
}

// ---- task detail ---------------------------------------------------------

function definitionList(entries) {
  return h("dl", { class: "facts" }, entries.filter(Boolean).map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function taskDetailView(view, taskId) {
  const box = h("div", { class: "detail" }, h("p", {}, "Loading…"));
  const message = h("p", { class: "message", role: "status" });
  fill(view, h("h1", {}, `Task #${taskId}`), message, box);
  let current = null;

  const act = async (verb, method, path, question, doneText) => {
    const ok = await confirmAction(`${verb} task #${taskId}?`, question, verb);
    if (!ok) return;
    try {
      const task = await api(path, { method });
      message.textContent = doneText(task);
      announce(message.textContent);
      render(task.attempt_history ? task : { ...task, attempt_history: current && current.attempt_history });
      load();
    } catch (error) {
      message.textContent = `${verb} failed: ${error.message}`;
    }
  };

  const render = (task) => {
    current = task;
    const actions = [];
    if (can("submit") && (task.status === "pending" || task.status === "in_progress") && !task.abort_requested) {
      actions.push(h("button", {
        type: "button", class: "danger", id: "cancel-task",
        onclick: () => act("Cancel", "DELETE", `/tasks/${taskId}`,
          task.status === "pending" ? "It will not run." : "Its worker will be asked to stop it.",
          (t) => (t.status === "cancelled" ? "Task cancelled." : "Stop requested: the task ends when its worker stops it.")),
      }, "Cancel task"));
    }
    if (can("submit") && (task.status === "failed" || task.status === "cancelled")) {
      actions.push(h("button", {
        type: "button", id: "retry-task",
        onclick: () => act("Retry", "POST", `/tasks/${taskId}/retry`, "It runs again now, as a new attempt.",
          () => "Task queued again."),
      }, "Retry task"));
    }
    const progress = task.progress
      ? h("div", { class: "progress" },
        task.progress.fraction !== null && task.progress.fraction !== undefined
          ? h("progress", { max: 1, value: task.progress.fraction, "aria-label": "Progress" }) : null,
        ` ${task.progress.fraction !== null && task.progress.fraction !== undefined ? Math.round(task.progress.fraction * 100) + " %" : ""} ${task.progress.message || ""}`)
      : null;
    const callback = task.callback
      ? `${task.callback.status} after ${task.callback.attempts} attempt(s)${task.callback.last_error ? ": " + task.callback.last_error : ""}`
      : null;
    const error = task.error
      ? h("section", { "aria-labelledby": "error-title", class: "card error-card" },
        h("h2", { id: "error-title" }, "Error"),
        h("p", { class: "error-message" }, `${task.error.type}: ${task.error.message}`),
        task.error.traceback ? h("details", { open: true }, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, task.error.traceback)) : null)
      : null;
    const attempts = task.attempt_history || [];
    fill(box, 
      h("div", { class: "actions" }, actions),
      definitionList([
        ["Status", h("span", { id: "task-status" }, statusBadge(task.status), task.abort_requested ? " (stop requested)" : "")],
        ["Type", task.type],
        ["Queue", task.queue],
        ["Priority", String(task.priority)],
        ["Attempts", `${task.attempts}${task.max_attempts ? " of " + task.max_attempts : ""}`],
        progress && ["Progress", progress],
        ["Created", formatTime(task.created_at)],
        task.scheduled_at && ["Scheduled for", formatTime(task.scheduled_at)],
        task.next_attempt_at && ["Next attempt", formatTime(task.next_attempt_at)],
        ["Started", formatTime(task.started_at)],
        ["Finished", formatTime(task.finished_at)],
        task.timeout_seconds && ["Time limit", formatSeconds(task.timeout_seconds)],
        task.unique_key && ["Unique key", task.unique_key],
        task.batch_id && ["Batch", h("a", { href: `#/tasks?batch_id=${task.batch_id}` }, `#${task.batch_id}`)],
        callback && ["Callback", callback],
      ]),
      h("section", { "aria-labelledby": "params-title", class: "card" }, h("h2", { id: "params-title" }, "Params"), h("pre", {}, json(task.params))),
      task.status === "completed" || task.result !== null
        ? h("section", { "aria-labelledby": "result-title", class: "card" }, h("h2", { id: "result-title" }, "Result"), h("pre", { id: "task-result" }, json(task.result)))
        : null,
      error,
      h("section", { "aria-labelledby": "attempts-title" }, h("h2", { id: "attempts-title" }, "Attempts"),
        attempts.length
          ? scrollTable("Attempts", ["Attempt", "Started", "Finished", "Outcome", "Error"], attempts.map((a) => h("tr", { dataset: { attempt: a.attempt } },
            h("td", {}, a.attempt), h("td", {}, formatTime(a.started_at)), h("td", {}, formatTime(a.finished_at)),
            h("td", {}, a.outcome || "running"), h("td", {}, a.error ? `${a.error.type}: ${a.error.message}` : ""))))
          : h("p", { class: "empty" }, "Not run yet.")),
    );
  };

  const load = async () => {
    try {
      render(await api(`/tasks/${taskId}`));
    } catch (error) {
      showError(box, error.status === 404 ? new Error(`There is no task #${taskId} (or this key may not see it).`) : error);
    }
  };
  const reload = throttle(load, 1000);
  load();
  return {
    onTaskEvent: (event, data) => {
      if (data.id !== taskId) return;
      if (event === "progress" && current) render({ ...current, progress: { ...data, updated_at: data.updated_at || new Date().toISOString() } });
      else reload();
    },
    poll: () => {
      if (!current || !FINAL.has(current.status)) load();
    },
  };
}

// ---- submit form from the type's JSON schema -----------------------------

function resolveSchema(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolveSchema((root.$defs || {})[name] || {}, root);
  }
  if (schema && Array.isArray(schema.anyOf)) {
    const real = schema.anyOf.filter((s) => s.type !== "null");
    if (real.length === 1) return { ...resolveSchema(real[0], root), default: schema.default, description: schema.description, title: schema.title };
  }
  return schema || {};
}

/** One form control per top-level property; what has no simple control takes JSON. */
function paramControl(name, schema, required) {
  const id = `param-${name}`;
  const hintId = schema.description ? `${id}-hint` : null;
  const common = { id, name, required: required || null, "aria-describedby": hintId, dataset: { param: name, kind: "" } };
  let input;
  if (Array.isArray(schema.enum)) {
    common.dataset.kind = "enum";
    input = h("select", common, schema.enum.map((v) => h("option", { value: JSON.stringify(v), selected: v === schema.default }, String(v))));
  } else if (schema.type === "integer" || schema.type === "number") {
    common.dataset.kind = "number";
    input = h("input", {
      ...common, type: "number", inputmode: schema.type === "integer" ? "numeric" : "decimal",
      step: schema.type === "integer" ? 1 : "any",
      min: schema.minimum ?? schema.exclusiveMinimum, max: schema.maximum ?? schema.exclusiveMaximum,
      value: schema.default,
    });
  } else if (schema.type === "boolean") {
    common.dataset.kind = "boolean";
    input = h("input", { ...common, type: "checkbox", checked: schema.default === true, required: null });
  } else if (schema.type === "string") {
    common.dataset.kind = "string";
    input = h("input", { ...common, type: "text", maxlength: schema.maxLength, minlength: schema.minLength, value: schema.default });
  } else {
    common.dataset.kind = "json";
    input = h("textarea", { ...common, rows: 3, spellcheck: "false", placeholder: "JSON, e.g. 42, \"text\" or {\"a\": 1}" },
      schema.default !== undefined ? JSON.stringify(schema.default) : "");
  }
  const label = `${schema.title || name}${required ? " (required)" : ""}${common.dataset.kind === "json" ? " (JSON)" : ""}`;
  return h("div", { class: common.dataset.kind === "boolean" ? "field checkbox" : "field" },
    h("label", { for: id }, label), input,
    hintId ? h("p", { class: "hint", id: hintId }, schema.description) : null);
}

function readParams(form) {
  const params = {};
  for (const el of form.querySelectorAll("[data-param]")) {
    const name = el.dataset.param;
    const kind = el.dataset.kind;
    el.removeAttribute("aria-invalid");
    if (kind === "boolean") params[name] = el.checked;
    else if (el.value === "") continue;
    else if (kind === "number") params[name] = Number(el.value);
    else if (kind === "enum") params[name] = JSON.parse(el.value);
    else if (kind === "json") {
      try {
        params[name] = JSON.parse(el.value);
      } catch {
        el.setAttribute("aria-invalid", "true");
        throw new Error(`${name}: not valid JSON`);
      }
    } else params[name] = el.value;
  }
  return params;
}

function submitView(view, params) {
  if (!can("submit")) {
    fill(view, h("h1", {}, "Submit a task"), h("p", {}, "This key may not submit tasks (it needs the submit scope)."));
    return {};
  }
  const box = h("div", {}, h("p", {}, "Loading task types…"));
  fill(view, h("h1", {}, "Submit a task"), box);
  api("/task-types").then((types) => {
    const names = Object.keys(types);
    const chosen = names.includes(params.get("type")) ? params.get("type") : names[0];
    const picker = h("select", { id: "submit-type", name: "type", onchange: (e) => { location.hash = `#/submit?type=${encodeURIComponent(e.target.value)}`; } },
      names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
    const type = types[chosen];
    const schema = type.params || {};
    const required = new Set(schema.required || []);
    const props = Object.entries(schema.properties || {});
    const error = h("div", { class: "error", role: "alert", id: "submit-error" });
    const form = h("form", { class: "card", id: "submit-form", "aria-describedby": "type-description", novalidate: true },
      h("fieldset", {}, h("legend", {}, `Params of ${chosen}`),
        props.length ? props.map(([name, s]) => paramControl(name, resolveSchema(s, schema), required.has(name))) : h("p", {}, "This type takes no params.")),
      h("details", {}, h("summary", {}, "Options"),
        field("Queue", h("input", { id: "opt-queue", name: "queue", autocomplete: "off", placeholder: "default" })),
        field("Priority (higher runs first)", h("input", { id: "opt-priority", name: "priority", type: "number", step: 1 })),
        field("Delay (seconds)", h("input", { id: "opt-delay", name: "delay_seconds", type: "number", min: 0, step: "any" })),
        field(`Max attempts (type default ${type.max_attempts})`, h("input", { id: "opt-max-attempts", name: "max_attempts", type: "number", min: 1, step: 1, max: type.max_attempts_limit })),
        field("Unique key", h("input", { id: "opt-unique-key", name: "unique_key", autocomplete: "off" }))),
      error,
      h("div", { class: "buttons" }, h("button", { type: "submit" }, `Submit ${chosen} task`)),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      let body;
      try {
        body = { type: chosen, params: readParams(form) };
      } catch (e) {
        error.textContent = e.message;
        return;
      }
      const data = new FormData(form);
      for (const [name, numeric] of [["queue", false], ["priority", true], ["delay_seconds", true], ["max_attempts", true], ["unique_key", false]]) {
        const value = String(data.get(name) || "").trim();
        if (value) body[name] = numeric ? Number(value) : value;
      }
      try {
        const task = await api("/tasks", { method: "POST", body });
        announce(`Task #${task.id} submitted.`);
        location.hash = `#/tasks/${task.id}`;
      } catch (e) {
        error.textContent = `Not submitted: ${e.message}`;
        for (const d of e.detail || []) {
          const loc = d.loc || [];
          const target = loc[1] === "params" ? form.querySelector(`[data-param="${loc[2]}"]`) : null;
          if (target) target.setAttribute("aria-invalid", "true");
        }
      }
    });
    fill(box, 
      field("Task type", picker),
      h("p", { id: "type-description", class: "hint" }, type.description || ""),
      form,
    );
  }).catch((e) => showError(box, e));
  return {};
}

// ---- schedules -----------------------------------------------------------

function schedulesView(view) {
  const box = h("div", {}, h("p", {}, "Loading…"));
  const message = h("p", { class: "message", role: "status" });
  fill(view, h("h1", {}, "Schedules"), message, box);
  const act = async (schedule, verb, path, question) => {
    if (!(await confirmAction(`${verb} schedule ${schedule.name}?`, question, verb))) return;
    try {
      const answer = await api(path, { method: "POST" });
      message.textContent = verb === "Run now" ? `Schedule ${schedule.name}: task #${answer.id} deferred.` : `Schedule ${schedule.name}: ${answer.enabled ? "resumed" : "paused"}.`;
      load();
    } catch (e) {
      message.textContent = `${verb} failed: ${e.message}`;
    }
  };
  const load = async () => {
    try {
      const { schedules } = await api("/scheduler/jobs");
      if (!schedules.length) {
        fill(box, h("p", { class: "empty" }, "No schedules."));
        return;
      }
      const admin = can("admin");
      fill(box, scrollTable("Schedules",
        ["Name", "Type", "Timing", "State", "Next run", "Last run", "Runs", ...(admin ? ["Actions"] : [])],
        schedules.map((s) => h("tr", { dataset: { schedule: s.name } },
          h("th", { scope: "row" }, s.name, s.source === "code" ? h("span", { class: "tag" }, "code") : null),
          h("td", {}, s.type),
          h("td", {}, s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${formatSeconds(s.interval_seconds)}`),
          h("td", { class: "schedule-state" }, s.enabled ? "active" : "paused"),
          h("td", {}, s.enabled ? formatTime(s.next_run_at) : "—"),
          h("td", {}, s.last_run_at ? formatTime(s.last_run_at) : "never",
            s.last_task_id ? [" ", taskLink(s.last_task_id), " ", s.last_task_status ? statusBadge(s.last_task_status) : null] : null),
          h("td", {}, `${s.completed_runs} completed, ${s.failed_runs} failed`),
          admin ? h("td", {}, h("div", { class: "row-actions" },
            s.enabled
              ? h("button", { type: "button", class: "secondary", onclick: () => act(s, "Pause", `/scheduler/jobs/${s.id}/pause`, "No runs until it is resumed.") }, "Pause")
              : h("button", { type: "button", class: "secondary", onclick: () => act(s, "Resume", `/scheduler/jobs/${s.id}/resume`, "It runs again from its next due time.") }, "Resume"),
            h("button", { type: "button", class: "secondary", onclick: () => act(s, "Run now", `/scheduler/jobs/${s.id}/run`, "One run is deferred now, whatever its timing.") }, "Run now"),
          )) : null))));
    } catch (e) {
      showError(box, e);
    }
  };
  load();
  const timer = setInterval(() => document.visibilityState === "visible" && load(), PAGES_MS);
  return { stop: () => clearInterval(timer) };
}

// ---- queues and workers --------------------------------------------------

function queuesView(view) {
  const box = h("div", {}, h("p", {}, "Loading…"));
  fill(view, h("h1", {}, "Queues and workers"), box);
  const load = async () => {
    try {
      const [queues, workers] = await Promise.all([api("/queues"), api("/workers")]);
      fill(box, 
        h("section", { "aria-labelledby": "q-title" }, h("h2", { id: "q-title" }, "Queues"), queueTable(queues)),
        h("section", { "aria-labelledby": "w-title" }, h("h2", { id: "w-title" }, "Workers"), workerTable(workers)),
      );
    } catch (e) {
      showError(box, e);
    }
  };
  load();
  const timer = setInterval(() => document.visibilityState === "visible" && load(), PAGES_MS);
  return { stop: () => clearInterval(timer) };
}

// ---- routing -------------------------------------------------------------

function route() {
  if (!state.me) return;
  if (state.view && state.view.stop) state.view.stop();
  const view = document.getElementById("view");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  let name = parts[0] || "overview";
  if (name === "tasks" && parts[1] && /^\d+$/.test(parts[1])) {
    state.view = taskDetailView(view, Number(parts[1]));
  } else if (name === "tasks") state.view = tasksView(view, params);
  else if (name === "submit") state.view = submitView(view, params);
  else if (name === "schedules") state.view = schedulesView(view);
  else if (name === "queues") state.view = queuesView(view);
  else {
    name = "overview";
    state.view = overviewView(view);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const title = view.querySelector("h1");
  document.title = `${title ? title.textContent : "Dashboard"} · taskservice`;
}

async function start() {
  document.getElementById("key-form").addEventListener("submit", useKey);
  document.getElementById("forget-key").addEventListener("click", forgetKey);
  window.addEventListener("hashchange", () => {
    route();
    document.getElementById("main").focus({ preventScroll: true });
  });
  try {
    if (await identify()) {
      startLive();
      route();
    } else {
      askForKey(state.key ? "The service refused the stored key." : "");
    }
  } catch (error) {
    showError(document.getElementById("view"), error);
  }
}

start();
