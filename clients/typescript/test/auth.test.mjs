// The client against a host that requires API keys: credentials on HTTP, WebSocket and SSE,
// typed 401s for none or a wrong one, and tenants that do not see each other's pipelines.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BusFlowApiError, BusFlowClient } from "../dist/index.js";
import { TestHost, collect, delay } from "./support/host.mjs";

const host = new TestHost({ "BusFlow:Edge:Auth:ApiKeys:key-a": "tenant-a", "BusFlow:Edge:Auth:ApiKeys:key-b": "tenant-b" });

before(() => host.start());
after(() => host.dispose());

const unauthorized = (error) => error instanceof BusFlowApiError && error.status === 401 && error.code === "unauthorized";

test("a caller without a key, or with a wrong one, gets a typed 401 on every path", async () => {
  for (const client of [new BusFlowClient(host.baseUrl), new BusFlowClient({ baseUrl: host.baseUrl, apiKey: "wrong" })]) {
    await assert.rejects(client.start("wordcount", { input: { texts: ["a"] } }), unauthorized);
    await assert.rejects(client.list(), unauthorized);
    for (const [target, transport] of [["*", "websocket"], [crypto.randomUUID(), "websocket"], [crypto.randomUUID(), "sse"]]) {
      const errors = [];
      const watch = client.watch(target, { transport, onEvent: () => {}, onError: (e) => errors.push(e) });
      await watch.done;
      assert.equal(errors.length, 1, `${target} over ${transport}`);
      assert.ok(unauthorized(errors[0]), `${target} over ${transport}: ${errors[0]}`);
    }
  }
});

test("a tenant's key starts and watches its pipelines, and another tenant sees none of them", async () => {
  const a = new BusFlowClient({ baseUrl: host.baseUrl, apiKey: "key-a" });
  const b = new BusFlowClient({ baseUrl: host.baseUrl, apiKey: "key-b" });
  const seenByB = [];
  let bConnected = false;
  const watchB = b.watch("*", { onEvent: (e) => seenByB.push(e), onConnected: () => (bConnected = true) });
  for (let waited = 0; !bConnected; waited += 50) {
    assert.ok(waited < 30_000, "b's watch did not connect");
    await delay(50);
  }

  const id = await a.start("wordcount", { input: { texts: ["a b"] } });
  for (const transport of ["websocket", "sse"]) {
    const events = await collect(a.watch(id, { transport }));
    assert.equal(events.at(-1).type, "PipelineCompleted", transport);
    assert.ok(events.every((e) => e.tags.tenant === "tenant-a"));
  }

  assert.equal((await a.status(id)).status, "Completed");
  await assert.rejects(b.status(id), (error) => error instanceof BusFlowApiError && error.status === 404 && error.code === "pipeline_not_found");
  await assert.rejects(b.cancel(id), (error) => error instanceof BusFlowApiError && error.code === "pipeline_not_found");
  await assert.rejects(a.start("wordcount", { input: { texts: ["a"] }, tags: { tenant: "tenant-b" } }), (error) =>
    error instanceof BusFlowApiError && error.status === 400 && error.code === "tenant_tag_reserved");
  // B's watch works: it gets B's own pipeline, which started after A's ended, and nothing of A's.
  const own = await b.start("wordcount", { input: { texts: ["b"] } });
  for (let waited = 0; !seenByB.some((e) => e.pipelineId === own && e.type === "PipelineCompleted"); waited += 50) {
    assert.ok(waited < 30_000, "b's watch did not get b's pipeline");
    await delay(50);
  }

  watchB.close();
  assert.deepEqual(seenByB.filter((e) => e.pipelineId === id), []);
  assert.ok(seenByB.every((e) => e.pipelineId === own && e.tags.tenant === "tenant-b"));
  assert.ok(!(await b.list()).pipelines.some((p) => p.pipelineId === id));
});
