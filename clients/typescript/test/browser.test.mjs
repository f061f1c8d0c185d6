// The same client in Chromium (Debian's, driven by Playwright): a page of the host imports the
// package the host serves (/lib/busflow/index.js, the dashboard's copy) and watches pipelines
// over WebSocket and SSE while the host is killed with SIGKILL and started again.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { TestHost, delay } from "./support/host.mjs";

const executablePath = process.env.BUSFLOW_CHROMIUM ?? "/usr/bin/chromium";
const host = new TestHost();
let browser;

before(async () => {
  if (!existsSync(executablePath)) {
    throw new Error(`Chromium is missing at ${executablePath}: tests/run.sh installs Debian's chromium (or set BUSFLOW_CHROMIUM)`);
  }

  await host.start();
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await host.dispose();
});

test("in Chromium, watches survive a SIGKILL and restart of the host with no gap and no duplicate", async () => {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));
  await page.goto(`${host.baseUrl}/health/live`);
  const ids = await page.evaluate(async () => {
    const { BusFlowClient } = await import("/lib/busflow/index.js");
    const client = new BusFlowClient({ baseUrl: location.origin, reconnect: { minDelayMs: 100, maxDelayMs: 1000, maxAttempts: 300 } });
    const results = { websocket: [], sse: [], reconnects: { websocket: 0, sse: 0 }, ended: 0, errors: [] };
    window.results = results;
    const ids = [];
    for (const transport of ["websocket", "sse"]) {
      const id = await client.start("demo", { input: { delayMs: 1500, progressTicks: 2 }, tags: { source: "chromium" } });
      ids.push(id);
      client.watch(id, {
        transport,
        onEvent: (e) => results[transport].push({ seq: e.seq, type: e.type, pipelineId: e.pipelineId }),
        onReconnecting: () => results.reconnects[transport]++,
        onError: (e) => results.errors.push(`${e.name} ${e.code}: ${e.message}`),
      }).done.then(() => results.ended++);
    }

    return ids;
  });

  const results = () => page.evaluate(() => window.results);
  await waitFor(async () => { const r = await results(); return r.websocket.length >= 3 && r.sse.length >= 3; }, 60_000);
  await host.kill();
  await delay(1_000);
  await host.start();
  await waitFor(async () => (await results()).ended === 2, 120_000);

  const r = await results();
  assert.deepEqual(r.errors, []);
  assert.ok(r.reconnects.websocket > 0 && r.reconnects.sse > 0, `reconnects ${JSON.stringify(r.reconnects)}`);
  for (const [id, events] of [[ids[0], r.websocket], [ids[1], r.sse]]) {
    const stored = await (await fetch(`${host.baseUrl}/api/pipelines/${id}/events?after=0&limit=1000`)).json();
    assert.deepEqual(events.map((e) => e.seq), stored.events.map((e) => e.seq));
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
    assert.equal(events.at(-1).type, "PipelineCompleted");
  }
});

async function waitFor(condition, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error("timed out waiting");
    }

    await delay(100);
  }
}
