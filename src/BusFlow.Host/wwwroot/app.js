// BusFlow dashboard: one WebSocket subscription to every pipeline ("*"), resumed by position
// after a reconnect; a pipeline's history comes from the long-poll API. No build step.
"use strict";

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
  socket: null,
  retries: 0,
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

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(apiKey ? { "X-Api-Key": apiKey } : {}), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  if (response.status === 401) {
    throw new Error("This edge requires an API key: open the dashboard as /?apiKey=<your key>");
  }
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(body && (body.detail || body.title) ? `${body.title}: ${body.detail || ""}`.trim() : `HTTP ${response.status}`);
  }
  return body;
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
      const page = await api(`/api/pipelines/${id}/events?after=${after}&limit=1000`);
      for (const e of page.events) state.events.get(id).set(e.seq, e);
      if (page.events.length < 1000) break;
      after = page.next;
    }
  } catch (error) {
    showError(error.message);
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
    api(`/api/definitions/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`)
      .then((d) => { state.versions.set(key, d); renderDetail(); })
      .catch(() => {});
  }
  return state.versions.get(key);
}

// ---- definition versions: what still runs on each, to know when an old one can go ---------

async function renderVersions() {
  const rows = await api("/api/definitions/versions");
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
          await api(`/api/pipelines/${id}/actions/${s.suspendId}`, {
            method: "POST", body: JSON.stringify({ approved }), headers: { "Content-Type": "application/json", "Idempotency-Key": `${s.suspendId}-${approved}` },
          });
        } catch (error) {
          showError(error.message);
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

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ---- live connection ------------------------------------------------------------------------

function setConnection(text, stateName) {
  const el = $("#connection");
  el.textContent = text;
  el.dataset.state = stateName;
}

// Every pipeline's events after the last position seen, several to a frame while replaying.
function subscribe(socket) {
  socket.send(JSON.stringify({ type: "subscribe", pipelineId: "*", after: state.position, batch: true }));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws${apiKey ? `?access_token=${encodeURIComponent(apiKey)}` : ""}`);
  state.socket = socket;
  socket.onopen = () => {
    state.retries = 0;
    setConnection("live", "live");
    subscribe(socket);
  };
  socket.onmessage = (message) => {
    const m = JSON.parse(message.data);
    if (m.type === "error") {
      if (m.code === "after_out_of_range") { reload(); return; }
      showError(m.message);
      return;
    }
    // A replay far back comes several events to a frame (batch below); live events mostly one.
    const events = m.type === "events" ? m.events : m.seq === undefined ? [] : [m]; // else subscribed, unsubscribed, pong
    for (const e of events) {
      if (e.position > state.position) state.position = e.position;
      applyToSummary(e);
      if (state.events.has(e.pipelineId)) state.events.get(e.pipelineId).set(e.seq, e);
    }
    if (events.length > 0) scheduleRender();
  };
  socket.onclose = () => {
    const delay = Math.min(5000, 250 * 2 ** state.retries++);
    setConnection(`reconnecting in ${Math.round(delay / 100) / 10}s`, "reconnecting");
    setTimeout(connect, delay);
  };
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
  const list = await api("/api/pipelines?limit=100");
  state.position = list.position;
  for (const p of list.pipelines) {
    state.pipelines.set(p.pipelineId, {
      pipelineId: p.pipelineId, definition: p.definition, definitionVersion: p.definitionVersion, status: p.status, startedAt: p.startedAt,
      stepsTotal: p.stepsTotal, done: new Set(p.completedSteps), suspended: false,
    });
  }
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    subscribe(state.socket);
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
    const started = await api("/api/pipelines", { method: "POST", body: JSON.stringify({ definition: $("#definition").value, input, tags: { source: "dashboard" } }) });
    await select(started.pipelineId);
  } catch (error) {
    showError(error.message);
  }
});

$("#cancel").addEventListener("click", async () => {
  try {
    await api(`/api/pipelines/${state.selected}/cancel`, { method: "POST" });
  } catch (error) {
    showError(error.message);
  }
});

(async function start() {
  try {
    const definitions = await api("/api/definitions");
    for (const d of definitions) state.definitions.set(d.name, d);
    $("#definition").replaceChildren(...definitions.map((d) => new Option(d.name, d.name, d.name === "demo", d.name === "demo")));
    $("#input").value = JSON.stringify(samples[$("#definition").value] ?? {}, null, 2);
    await reload();
    await renderVersions();
  } catch (error) {
    showError(`Cannot reach the BusFlow API: ${error.message}`);
  }
  connect();
  setInterval(() => renderVersions().catch(() => {}), 5000);
})();
