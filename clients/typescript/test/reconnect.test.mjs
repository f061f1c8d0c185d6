// Watches that survive a crashed server: the host is killed with SIGKILL in the middle of running
// pipelines and started again on the same port and database. Every watch (one pipeline and '*',
// over WebSocket and SSE) must come back by itself and deliver every event once, in order, with no gap.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BusFlowClient, BusFlowConnectionError, isFinal } from "../dist/index.js";
import { TestHost, delay } from "./support/host.mjs";

const host = new TestHost();
const reconnect = { minDelayMs: 100, maxDelayMs: 1_000, maxAttempts: 300 };

before(() => host.start());
after(() => host.dispose());

test("a watch survives a SIGKILL and restart of the host with no gap and no duplicate", async () => {
  const client = new BusFlowClient({ baseUrl: host.baseUrl, reconnect });
  const run = crypto.randomUUID();
  const { position } = await client.list({ limit: 1 });
  const input = { delayMs: 1_500, progressTicks: 2 };
  const ids = [];
  for (let i = 0; i < 3; i++) {
    ids.push(await client.start("demo", { input, tags: { run } }));
  }

  const reconnects = { websocket: 0, sse: 0, star: 0, starSse: 0 };
  const single = (id, transport) => {
    const events = [];
    const watch = client.watch(id, { transport, onEvent: (e) => events.push(e), onReconnecting: () => reconnects[transport]++ });
    return { events, watch };
  };
  const overWebSocket = single(ids[0], "websocket");
  const overSse = single(ids[1], "sse");
  const everything = [];
  const star = client.watch("*", { after: position, tags: { run }, onEvent: (e) => everything.push(e), onReconnecting: () => reconnects.star++ });
  const everythingOverSse = [];
  const starOverSse = client.watch("*", { transport: "sse", after: position, tags: { run }, onEvent: (e) => everythingOverSse.push(e), onReconnecting: () => reconnects.starSse++ });

  // Kill the host once every watch has events and no pipeline has ended.
  await waitFor(() => overWebSocket.events.length >= 3 && overSse.events.length >= 3 && everything.length >= 9 && everythingOverSse.length >= 9, 60_000);
  assert.ok(![...overWebSocket.events, ...overSse.events, ...everything, ...everythingOverSse].some(isFinal), "the pipelines ended before the kill; make them longer");
  await host.kill();
  await delay(1_000);
  await host.start();

  let ended = 0;
  overWebSocket.watch.done.then(() => ended++);
  overSse.watch.done.then(() => ended++);
  await waitFor(() => ended === 2, 120_000);
  await waitFor(() => everything.filter(isFinal).length === 3 && everythingOverSse.filter(isFinal).length === 3, 60_000);
  star.close();
  starOverSse.close();

  assert.ok(Object.values(reconnects).every((n) => n > 0), `reconnects ${JSON.stringify(reconnects)}`);
  for (const [id, events] of [[ids[0], overWebSocket.events], [ids[1], overSse.events]]) {
    await assertWhole(client, id, events);
  }

  assert.deepEqual(everythingOverSse.map((e) => e.position), everything.map((e) => e.position));
  const positions = everything.map((e) => e.position);
  assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]), "positions strictly increase");
  for (const id of ids) {
    await assertWhole(client, id, everything.filter((e) => e.pipelineId === id));
  }
});

test("a watch gives up with a typed error after the configured attempts", async () => {
  const client = new BusFlowClient({ baseUrl: "http://127.0.0.1:9", reconnect: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } });
  const attempts = [];
  const watch = client.watch(crypto.randomUUID(), { onReconnecting: (info) => attempts.push(info.attempt) });
  await assert.rejects(async () => {
    for await (const event of watch) {
      assert.fail(`no event expected, got ${event.type}`);
    }
  }, (error) => error instanceof BusFlowConnectionError && error.attempts === 3 && error.cause !== undefined);
  // Three connections, two waits between them, then the give-up.
  assert.deepEqual(attempts, [1, 2]);
});

/** The watch saw exactly the pipeline's stored history: seq 1..last, each once, ending with its final event. */
async function assertWhole(client, id, events) {
  const stored = await client.request("GET", `/api/pipelines/${id}/events?after=0&limit=1000`);
  assert.deepEqual(events.map((e) => e.seq), stored.events.map((e) => e.seq), `pipeline ${id}`);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
  assert.ok(isFinal(events.at(-1)), `pipeline ${id} ends with ${events.at(-1)?.type}`);
}

async function waitFor(condition, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error("timed out waiting");
    }

    await delay(50);
  }
}
