// BusFlow dashboard: one watch of every pipeline ("*") through BusFlow's TypeScript client
// (clients/typescript, built into lib/busflow by the host's build), which reconnects and resumes by
// position by itself; a pipeline's history comes from the long-poll API.
import { BusFlowApiError, BusFlowClient } from "./lib/busflow/index.js";

const samples = {
  demo: { delayMs: 300, progressTicks: 2, failStep: null, flakyStep: null },
  wordcount: { texts: ["a b", "b c", "c d e"] },
  approval: { title: "Launch post" },
};
const terminal = new Set(["PipelineCompleted", "PipelineFailed", "PipelineCancelled"]);
const state = {
  definitions: new Map(),
  // Shapes of definition versions other than the current ones ("name@version" -> definition, or null when not registered here).
  versions: new Map(),
  pipelines: new Map(),   // id -> summary
  events: new Map(),      // id -> Map(seq -> event), for pipelines opened in the detail view
  selected: null,
  position: 0,            // last position received on "*": where to resume
  watch: null,
};

const $ = (selector) => document.querySelector(selector);

// With auth on, open the dashboard once as /?apiKey=<key>; the key is kept in this browser.
const apiKey = (() => {
  const given = new URLSearchParams(location.search).get("apiKey");
  if (given) localStorage.setItem("busflow.apiKey", given);
  return given || localStorage.getItem("busflow.apiKey");
})();

function showError(message) {
  const banner = $("#banner");
  banner.textContent = message;
  banner.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { banner.hidden = true; }, 8000);
}

const client = new BusFlowClient({ baseUrl: location.origin, apiKey: apiKey || undefined });

function describe(error) {
  return error instanceof BusFlowApiError && error.status === 401
    ? "This edge requires an API key: open the dashboard as /?apiKey=<your key>"
    : error.message;
}

// ---- pipelines list -------------------------------------------------------------------------

function summaryFromEvent(e) {
  let p = state.pipelines.get(e.pipelineId);
  if (!p) {
    const definition = state.definitions.get(e.definition);
    p = { pipelineId: e.pipelineId, definition: e.definition, definitionVersion: e.definitionVersion || "", status: "Running", startedAt: e.timestamp,
          stepsTotal: definition ? definition.steps.length : 0, done: new Set(), suspended: false };
    state.pipelines.set(e.pipelineId, p);
  }
  if (e.type === "PipelineStarted" && e.definitionVersion) p.definitionVersion = e.definitionVersion;
  return p;
}

function applyToSummary(e) {
  const p = summaryFromEvent(e);
  if (e.type === "StepCompleted" && e.itemIndex == null) p.done.add(e.stepName);
  if (e.type === "StepSuspended") p.suspended = true;
  if (e.type === "StepStarted" || e.type === "StepCompleted") p.suspended = false;
  if (e.type === "PipelineCompleted") p.status = "Completed";
  if (e.type === "PipelineFailed") p.status = "Failed";
  if (e.type === "PipelineCancelled") p.status = "Cancelled";
}

function renderList() {
  const body = $("#pipelines tbody");
  const rows = [...state.pipelines.values()].sort((a, b) => (a.startedAt < b.startedAt ? 1 : -1)).slice(0, 100);
  $("#empty").hidden = rows.length > 0;
  body.replaceChildren(...rows.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.id = p.pipelineId;
    tr.className = p.pipelineId === state.selected ? "selected" : "";
    const shown = p.status === "Running" && p.suspended ? "Suspended" : p.status;
    const percent = p.stepsTotal ? Math.round((100 * p.done.size) / p.stepsTotal) : 0;
    tr.innerHTML = `<td><code>${p.pipelineId.slice(0, 8)}…</code></td><td>${escape(p.definition)}</td>
      <td><span class="status ${shown}" data-status="${shown}">${shown}</span></td>
      <td><span class="progress" title="${percent}%"><span style="width:${percent}%"></span></span> ${p.done.size}/${p.stepsTotal}</td>
      <td>${new Date(p.startedAt).toLocaleTimeString()}</td>`;
    tr.addEventListener("click", () => select(p.pipelineId));
    return tr;
  }));
}

// ---- detail: DAG, timeline, suspensions -----------------------------------------------------

async function select(id) {
  state.selected = id;
  $("#placeholder").hidden = true;
  $("#detail").hidden = false;
  if (!state.events.has(id)) state.events.set(id, new Map());
  renderList();
  renderDetail();
  // History from the store; live events keep arriving on "*" meanwhile (kept by seq, so no doubles).
  try {
    let after = 0;
    for (;;) {
      const page = await client.events(id, { after, limit: 1000 });
      for (const e of page.events) state.events.get(id).set(e.seq, e);
      if (page.events.length < 1000) break;
      after = page.next;
    }
  } catch (error) {
    showError(describe(error));
  }
  if (state.selected === id) renderDetail();
}

function stepStates(id) {
  const steps = new Map();
  const events = [...(state.events.get(id) || new Map()).values()].sort((a, b) => a.seq - b.seq);
  let finished = null;
  for (const e of events) {
    if (terminal.has(e.type)) finished = e.type;
    if (!e.stepName) continue;
    const s = steps.get(e.stepName) || { state: "pending", attempt: 0, percent: null, suspendId: null, reason: null };
    s.attempt = Math.max(s.attempt, e.attempt || 0);
    switch (e.type) {
      case "StepStarted": s.state = "running"; s.suspendId = null; break;
      case "StepProgress": if (e.percent != null) s.percent = e.percent; break;
      case "StepCompleted": if (e.itemIndex == null) { s.state = "completed"; s.percent = 100; } break;
      case "StepFailed": if (!e.willRetry) s.state = "failed"; break;
      case "StepSuspended": s.state = "suspended"; s.suspendId = e.suspendId; s.reason = e.reason; break;
    }
    steps.set(e.stepName, s);
  }
  if (finished === "PipelineCancelled") {
    for (const s of steps.values()) if (s.state === "running" || s.state === "suspended") s.state = "cancelled";
  }
  return { steps, events, finished };
}

function renderDetail() {
  const id = state.selected;
  if (!id) return;
  const p = state.pipelines.get(id);
  const { steps, events, finished } = stepStates(id);
  const definitionName = p ? p.definition : events[0] && events[0].definition;
  const started = events.find((e) => e.type === "PipelineStarted");
  const version = (p && p.definitionVersion) || (started && started.definitionVersion) || "";
  const definition = definitionOf(definitionName, version);
  const status = finished ? finished.replace("Pipeline", "") : (p ? p.status : "Running");
  const suspended = [...steps.entries()].filter(([, s]) => s.state === "suspended" && s.suspendId);
  const shown = status === "Running" && suspended.length ? "Suspended" : status;
  $("#detail-definition").textContent = definitionName || "";
  $("#detail-version").textContent = version ? `version ${version}` : "";
  $("#detail-id").textContent = id;
  const badge = $("#detail-status");
  badge.textContent = shown;
  badge.className = `status ${shown}`;
  badge.dataset.status = shown;
  $("#cancel").disabled = status !== "Running";
  renderSuspensions(id, suspended);
  $("#dag").hidden = !definition;
  if (definition) renderDag(definition, steps);
  renderGantt(definition, events, finished);
  $("#timeline").replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.dataset.type = e.type;
    const what = [e.stepName, e.itemIndex != null ? `[${e.itemIndex}]` : "", e.attempt ? `attempt ${e.attempt}` : "",
      e.percent != null ? `${Math.round(e.percent)}%` : "", e.message || "", e.error ? `${e.error.kind}: ${e.error.message}` : "",
      e.willRetry ? "will retry" : "", e.reason || ""].filter(Boolean).join(" · ");
    li.innerHTML = `<span class="seq">${e.seq}</span><span class="type">${e.type}</span> ${escape(what)}`;
    return li;
  }));
}

/**
 * The definition a pipeline runs on: the current one of its name, or an older version registered
 * here to drain (fetched once, then drawn); null while fetching or when this edge lacks that version.
 */
function definitionOf(name, version) {
  const current = state.definitions.get(name);
  if (!version || (current && current.version === version)) return current;
  const key = `${name}@${version}`;
  if (!state.versions.has(key)) {
    state.versions.set(key, null);
    client.definition(name, version)
      .then((d) => { state.versions.set(key, d); renderDetail(); })
      .catch(() => {});
  }
  return state.versions.get(key);
}

// ---- definition versions: what still runs on each, to know when an old one can go ---------

async function renderVersions() {
  const rows = await client.definitionVersions();
  $("#versions tbody").replaceChildren(...rows.map((v) => {
    const tr = document.createElement("tr");
    tr.dataset.definition = v.definition;
    tr.dataset.version = v.version;
    const role = v.current ? "current" : v.registered ? "draining" : "not here";
    tr.innerHTML = `<td>${escape(v.definition)}</td><td><code>${escape(v.version)}</code></td>
      <td><span class="version-role" data-role="${role}">${role}</span></td><td class="running">${v.running}</td>`;
    return tr;
  }));
}

function renderSuspensions(id, suspended) {
  $("#suspensions").replaceChildren(...suspended.map(([name, s]) => {
    const div = document.createElement("div");
    div.className = "suspension";
    div.innerHTML = `<span><strong>${escape(name)}</strong> is waiting: ${escape(s.reason || "an answer")}</span>`;
    for (const [label, approved, cls] of [["Approve", true, ""], ["Reject", false, "secondary"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.className = cls;
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await client.answer(id, s.suspendId, { approved }, { idempotencyKey: `${s.suspendId}-${approved}` });
        } catch (error) {
          showError(describe(error));
          button.disabled = false;
        }
      });
      div.append(button);
    }
    return div;
  }));
}

function renderDag(definition, steps) {
  const svg = $("#dag");
  const w = 150, h = 50, dx = 190, dy = 70;
  const at = new Map();
  definition.levels.forEach((level, x) => level.forEach((name, y) => at.set(name, { x: 10 + x * dx, y: 10 + y * dy })));
  const height = Math.max(...definition.levels.map((l) => l.length)) * dy + 10;
  svg.setAttribute("viewBox", `0 0 ${definition.levels.length * dx} ${height}`);
  svg.style.height = `${height}px`;
  const ns = "http://www.w3.org/2000/svg";
  const parts = [`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>`];
  for (const edge of definition.edges) {
    const a = at.get(edge.from), b = at.get(edge.to);
    if (!a || !b) continue;
    const x1 = a.x + w, y1 = a.y + h / 2, x2 = b.x, y2 = b.y + h / 2, mx = (x1 + x2) / 2;
    parts.push(`<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`);
  }
  for (const step of definition.steps) {
    const p = at.get(step.name);
    const s = steps.get(step.name) || { state: "pending", attempt: 0, percent: null };
    const sub = [s.state, s.attempt > 1 ? `attempt ${s.attempt}` : "", s.state === "running" && s.percent != null ? `${Math.round(s.percent)}%` : ""].filter(Boolean).join(" · ");
    parts.push(`<g class="step ${s.state}" data-step="${escape(step.name)}" data-state="${s.state}" transform="translate(${p.x},${p.y})">
      <rect width="${w}" height="${h}"/><text x="10" y="20">${escape(step.name)}</text><text class="sub" x="10" y="38">${escape(sub)}</text></g>`);
  }
  svg.innerHTML = parts.join("");
  svg.setAttribute("xmlns", ns);
}

// ---- step timeline (Gantt): every attempt, retry and suspension of every step over time --------

/**
 * The bars of a pipeline's timeline from its events: per step (and map item), each attempt from
 * its StepStarted to its StepCompleted or StepFailed (failed, or retrying when another attempt
 * follows), and each suspension from its StepSuspended to the step's next event; what is still
 * open runs to the pipeline's end (cancelled when it was cancelled) or to now.
 */
function ganttBars(events, finished) {
  const bars = [];
  const open = new Map(); // "step#item" -> the open bar
  const at = (e) => Date.parse(e.timestamp);
  const close = (key, end, kind) => {
    const bar = open.get(key);
    if (!bar) return;
    bar.end = Math.max(end, bar.start);
    if (kind) bar.kind = kind;
    open.delete(key);
  };
  let end = null;
  for (const e of events) {
    if (terminal.has(e.type)) end = at(e);
    if (!e.stepName) continue;
    const key = `${e.stepName}#${e.itemIndex ?? ""}`;
    const t = at(e);
    switch (e.type) {
      case "StepStarted":
        close(key, t);
        open.set(key, { step: e.stepName, item: e.itemIndex, attempt: e.attempt, start: t, end: null, kind: "running" });
        bars.push(open.get(key));
        break;
      case "StepCompleted":
      case "StepFailed": {
        const kind = e.type === "StepCompleted" ? "completed" : e.willRetry ? "retrying" : "failed";
        if (open.has(key) && open.get(key).kind === "running") {
          close(key, t, kind);
        } else {
          close(key, t);
          // A whole map step completes without its own StepStarted bar: drawn from its first item.
          const first = bars.find((b) => b.step === e.stepName);
          if (e.itemIndex == null && first && first.item != null) break;
          bars.push({ step: e.stepName, item: e.itemIndex, attempt: e.attempt, start: t - (e.durationMs || 0), end: t, kind });
        }
        break;
      }
      case "StepSuspended":
        close(key, t, "completed");
        open.set(key, { step: e.stepName, item: e.itemIndex, attempt: e.attempt, start: t, end: null, kind: "suspended" });
        bars.push(open.get(key));
        break;
    }
  }
  const until = end ?? Date.now();
  for (const bar of open.values()) {
    bar.end = until;
    if (finished === "PipelineCancelled") bar.kind = "cancelled";
    else if (end == null) bar.open = true;
  }
  return bars;
}

function renderGantt(definition, events, finished) {
  const svg = $("#gantt");
  const started = events.find((e) => e.type === "PipelineStarted");
  const bars = started ? ganttBars(events, finished) : [];
  svg.hidden = bars.length === 0;
  if (svg.hidden) return;
  const order = definition ? definition.steps.map((s) => s.name) : [];
  for (const b of bars) if (!order.includes(b.step)) order.push(b.step);
  const t0 = Date.parse(started.timestamp);
  const t1 = Math.max(t0 + 1, ...bars.map((b) => b.end));
  const label = 110, width = 560, row = 26, top = 20;
  const x = (t) => label + ((t - t0) / (t1 - t0)) * width;
  const height = top + order.length * row + 4;
  svg.setAttribute("viewBox", `0 0 ${label + width + 10} ${height}`);
  svg.style.height = `${height}px`;
  const parts = [`<text class="axis" x="${label}" y="12">0 s</text><text class="axis end" x="${label + width}" y="12">${((t1 - t0) / 1000).toFixed(1)} s</text>`];
  order.forEach((name, i) => {
    const y = top + i * row;
    parts.push(`<text class="name" x="0" y="${y + 16}">${escape(name)}</text><line class="lane" x1="${label}" x2="${label + width}" y1="${y + row - 2}" y2="${y + row - 2}"/>`);
    const mine = bars.filter((b) => b.step === name);
    const items = [...new Set(mine.map((b) => b.item ?? -1))];
    for (const b of mine) {
      // Map items share the step's row, each in a slice of its own.
      const slice = (row - 6) / items.length;
      const by = y + 2 + items.indexOf(b.item ?? -1) * slice;
      const bw = Math.max(2, x(b.end) - x(b.start));
      const what = `${name}${b.item != null ? ` [${b.item}]` : ""} attempt ${b.attempt}: ${b.kind}${b.open ? " (so far)" : ""}, ${((b.end - b.start) / 1000).toFixed(2)} s`;
      parts.push(`<rect class="bar ${b.kind}" data-step="${escape(name)}" data-kind="${b.kind}" data-attempt="${b.attempt}" x="${x(b.start).toFixed(1)}" y="${by.toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(2, slice - 2).toFixed(1)}"><title>${escape(what)}</title></rect>`);
    }
  });
  svg.innerHTML = parts.join("");
}

// ---- live chart: pipelines finished per second and step duration percentiles, last minute -----

const live = { finished: [], steps: [] }; // [time ms], [{ t, ms }] from the "*" subscription, live only

function recordLive(e) {
  const t = Date.parse(e.timestamp);
  if (Date.now() - t > 60_000) return; // a replay of older events is history, not the live rate
  if (terminal.has(e.type)) live.finished.push(t);
  if (e.type === "StepCompleted" && e.durationMs != null) live.steps.push({ t, ms: e.durationMs });
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : null;
}

function renderChart() {
  const now = Date.now();
  live.finished = live.finished.filter((t) => now - t <= 60_000);
  live.steps = live.steps.filter((s) => now - s.t <= 60_000);
  const seconds = 60, w = 300, h = 90;
  const perSecond = Array.from({ length: seconds }, (_, i) => live.finished.filter((t) => Math.floor((now - t) / 1000) === seconds - 1 - i).length);
  // Step duration percentiles per 5 s window.
  const windows = Array.from({ length: 12 }, (_, i) => {
    const inWindow = live.steps.filter((s) => Math.floor((now - s.t) / 5000) === 11 - i).map((s) => s.ms).sort((a, b) => a - b);
    return { p50: percentile(inWindow, 0.5), p95: percentile(inWindow, 0.95) };
  });
  const maxRate = Math.max(1, ...perSecond);
  const maxMs = Math.max(1, ...windows.map((x) => x.p95 ?? 0));
  const line = (points) => points.filter(Boolean).map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
  const rate = line(perSecond.map((n, i) => [(i / (seconds - 1)) * w, h - (n / maxRate) * (h - 10)]));
  const pLine = (key) => line(windows.map((x, i) => (x[key] == null ? null : [((i + 0.5) / 12) * w, h - (x[key] / maxMs) * (h - 10)])));
  const svg = $("#chart");
  svg.setAttribute("viewBox", `0 0 ${w} ${h + 12}`);
  svg.innerHTML = `<path class="finished" d="${rate}"/><path class="p50" d="${pLine("p50")}"/><path class="p95" d="${pLine("p95")}"/>
    <text class="axis" x="0" y="${h + 11}">-60 s</text><text class="axis end" x="${w}" y="${h + 11}">now</text>
    <text class="axis" x="2" y="9">${maxRate}/s · ${Math.round(maxMs)} ms</text>`;
  const recent = live.finished.filter((t) => now - t <= 10_000).length / 10;
  $("#rate").textContent = recent.toFixed(1);
  const all = live.steps.map((s) => s.ms).sort((a, b) => a - b);
  $("#p95").textContent = all.length ? `${Math.round(percentile(all, 0.95))} ms over ${all.length} steps` : "–";
  svg.dataset.finished = String(live.finished.length);
  svg.dataset.steps = String(live.steps.length);
}

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ---- live connection ------------------------------------------------------------------------

function setConnection(text, stateName) {
  const el = $("#connection");
  el.textContent = text;
  el.dataset.state = stateName;
}

// Every pipeline's events after the last position seen, several to a frame while replaying; the
// client reconnects with back-off and resumes after the last event it delivered.
function connect() {
  state.watch?.close();
  state.watch = client.watch("*", {
    after: state.position,
    reconnect: { maxAttempts: Infinity },
    onConnected: () => setConnection("live", "live"),
    onReconnecting: ({ delayMs }) => setConnection(`reconnecting in ${Math.round(delayMs / 100) / 10}s`, "reconnecting"),
    onEvent: (e) => {
      if (e.position > state.position) state.position = e.position;
      applyToSummary(e);
      recordLive(e);
      if (state.events.has(e.pipelineId)) state.events.get(e.pipelineId).set(e.seq, e);
      scheduleRender();
    },
    onError: (error) => {
      // The store was reset behind the position we hold: start again from the list.
      if (error.code === "after_out_of_range") { reload().catch((e) => showError(describe(e))); return; }
      setConnection("disconnected", "reconnecting");
      showError(describe(error));
    },
  });
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderList();
    renderDetail();
  });
}

async function reload() {
  const list = await client.list({ limit: 100 });
  state.position = list.position;
  for (const p of list.pipelines) {
    state.pipelines.set(p.pipelineId, {
      pipelineId: p.pipelineId, definition: p.definition, definitionVersion: p.definitionVersion, status: p.status, startedAt: p.startedAt,
      stepsTotal: p.stepsTotal, done: new Set(p.completedSteps), suspended: false,
    });
  }
  if (state.watch) {
    connect();
  }
  renderList();
}

// ---- start and cancel -----------------------------------------------------------------------

$("#definition").addEventListener("change", (e) => {
  $("#input").value = JSON.stringify(samples[e.target.value] ?? {}, null, 2);
});

$("#start").addEventListener("submit", async (e) => {
  e.preventDefault();
  let input;
  try {
    input = JSON.parse($("#input").value || "null");
  } catch (error) {
    showError(`The input is not valid JSON: ${error.message}`);
    return;
  }
  try {
    const pipelineId = await client.start($("#definition").value, { input, tags: { source: "dashboard" } });
    await select(pipelineId);
  } catch (error) {
    showError(describe(error));
  }
});

$("#cancel").addEventListener("click", async () => {
  try {
    await client.cancel(state.selected);
  } catch (error) {
    showError(describe(error));
  }
});

(async function start() {
  try {
    const definitions = await client.definitions();
    for (const d of definitions) state.definitions.set(d.name, d);
    $("#definition").replaceChildren(...definitions.map((d) => new Option(d.name, d.name, d.name === "demo", d.name === "demo")));
    $("#input").value = JSON.stringify(samples[$("#definition").value] ?? {}, null, 2);
    await reload();
    await renderVersions();
  } catch (error) {
    showError(`Cannot reach the BusFlow API: ${describe(error)}`);
  }
  connect();
  setInterval(() => renderVersions().catch(() => {}), 5000);
  renderChart();
  setInterval(renderChart, 1000);
})();
