// The client against a real BusFlow.Host: the HTTP API, watches over WebSocket and SSE, filters,
// and typed errors on bad input.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BusFlowApiError, BusFlowClient, BusFlowError, BusFlowSubscriptionError, isFinal } from "../dist/index.js";
import { TestHost, collect } from "./support/host.mjs";
import WebSocketOfWs from "ws";

const host = new TestHost();
let client;

before(async () => {
  await host.start();
  client = new BusFlowClient({ baseUrl: host.baseUrl });
});

after(() => host.dispose());

const gapless = (events) => events.map((e) => e.seq).every((seq, i) => seq === i + 1);

describe("the HTTP API", () => {
  test("starts, answers, reads the status and lists a pipeline", async () => {
    const id = await client.start("approval", { input: { title: "Launch" }, tags: { suite: "api" } });
    const watch = client.watch(id);
    const seen = [];
    for await (const event of watch) {
      seen.push(event);
      if (event.type === "StepSuspended") {
        assert.equal(event.stepName, "approve");
        await client.answer(id, event.suspendId, { approved: true });
      }
    }

    assert.ok(gapless(seen), `seqs ${seen.map((e) => e.seq)}`);
    assert.equal(seen.at(-1).type, "PipelineCompleted");
    assert.equal(watch.cursor, seen.at(-1).seq);

    const status = await client.status(id);
    assert.equal(status.status, "Completed");
    assert.equal(status.definition, "approval");
    assert.equal(status.lastSeq, seen.at(-1).seq);
    assert.deepEqual(status.steps.map((s) => s.name), ["draft", "approve", "publish"]);
    assert.deepEqual(status.tags, { suite: "api" });

    const list = await client.list({ limit: 10 });
    assert.ok(list.position >= seen.at(-1).position);
    assert.ok(list.pipelines.some((p) => p.pipelineId === id && p.status === "Completed"));
  });

  test("starts one pipeline for one idempotency key", async () => {
    const key = `key-${crypto.randomUUID()}`;
    const first = await client.start("wordcount", { input: { texts: ["a b"] }, idempotencyKey: key });
    const again = await client.start("wordcount", { input: { texts: ["a b"] }, idempotencyKey: key });
    assert.equal(again, first);
    await assert.rejects(client.start("wordcount", { input: { texts: ["other"] }, idempotencyKey: key }), (error) =>
      error instanceof BusFlowApiError && error.status === 409 && error.code === "idempotency_key_reused");
  });

  test("cancels a running pipeline and refuses to cancel it twice", async () => {
    const id = await client.start("demo", { input: { delayMs: 10_000 } });
    await client.cancel(id);
    const events = await collect(client.watch(id));
    assert.equal(events.at(-1).type, "PipelineCancelled");
    await assert.rejects(client.cancel(id), (error) => error instanceof BusFlowApiError && error.code === "pipeline_finished" && error.status === 409);
  });

  test("throws typed errors with the problem's code on bad input", async () => {
    await assert.rejects(client.start("no-such-pipeline"), (error) =>
      error instanceof BusFlowApiError && error.status === 422 && error.code === "unknown_definition" && error.problem?.code === "unknown_definition");
    await assert.rejects(client.start("wordcount", { input: { texts: "not an array" } }), (error) =>
      error instanceof BusFlowApiError && error.code === "invalid_input" && Array.isArray(error.problem?.errors) && error.problem.errors.length > 0);
    await assert.rejects(client.status("not-a-uuid"), (error) => error instanceof BusFlowApiError && error.status === 400 && error.code === "invalid_pipeline_id");
    await assert.rejects(client.status(crypto.randomUUID()), (error) => error instanceof BusFlowApiError && error.status === 404 && error.code === "pipeline_not_found");
    await assert.rejects(client.list({ limit: 0 }), (error) => error instanceof BusFlowApiError && error.code === "invalid_query");
    await assert.rejects(client.answer(crypto.randomUUID(), crypto.randomUUID(), true), (error) => error instanceof BusFlowApiError && error.code === "pipeline_not_found");
    // The edge keeps serving after bad input.
    assert.ok(Array.isArray((await client.list()).pipelines));
  });
});

describe("watching", () => {
  for (const transport of ["websocket", "sse"]) {
    test(`one pipeline over ${transport}: every event once, in order, to its final event`, async () => {
      const id = await client.start("demo", { input: { delayMs: 50, progressTicks: 2 } });
      const events = await collect(client.watch(id, { transport }));
      assert.ok(gapless(events), `seqs ${events.map((e) => e.seq)}`);
      assert.equal(events[0].type, "PipelineStarted");
      assert.ok(isFinal(events.at(-1)));
      assert.ok(events.every((e) => e.pipelineId === id && e.position > 0));
    });

    test(`only the asked event types over ${transport}, and the final event`, async () => {
      const id = await client.start("demo", { input: { delayMs: 20 } });
      const events = await collect(client.watch(id, { transport, eventTypes: ["StepCompleted"] }));
      assert.deepEqual([...new Set(events.map((e) => e.type))], ["StepCompleted", "PipelineCompleted"]);
      assert.equal(events.filter((e) => e.type === "StepCompleted").length, 5);
      assert.ok(events.map((e) => e.seq).every((seq, i, all) => i === 0 || seq > all[i - 1]));
    });

    test(`resumes after a given seq over ${transport}`, async () => {
      const id = await client.start("wordcount", { input: { texts: ["a b", "b c"] } });
      const all = await collect(client.watch(id, { transport }));
      const rest = await collect(client.watch(id, { transport, after: 3 }));
      assert.deepEqual(rest.map((e) => e.seq), all.slice(3).map((e) => e.seq));
    });

    test(`refuses an unknown event type over ${transport} with a typed error`, async () => {
      const id = await client.start("wordcount", { input: { texts: ["a"] } });
      const errors = [];
      const watch = client.watch(id, { transport, eventTypes: ["NoSuchEvent"], onEvent: () => {}, onError: (e) => errors.push(e) });
      await watch.done;
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, "unknown_event_type");
      assert.ok(transport === "websocket" ? errors[0] instanceof BusFlowSubscriptionError : errors[0] instanceof BusFlowApiError);
    });
  }

  for (const transport of ["websocket", "sse"]) {
    test(`every pipeline ('*') over ${transport} filtered by tags and type, with callbacks`, async () => {
      const run = crypto.randomUUID();
      const seen = [];
      let connected = 0;
      const watch = client.watch("*", { transport, tags: { run }, eventTypes: ["PipelineCompleted"], onEvent: (e) => seen.push(e), onConnected: () => connected++ });
      // Subscribed from now: pipelines started before it are not seen.
      await waitFor(() => connected > 0);
      await client.start("wordcount", { input: { texts: ["x"] }, tags: { run: "other" } });
      const ids = [
        await client.start("wordcount", { input: { texts: ["a"] }, tags: { run } }),
        await client.start("wordcount", { input: { texts: ["b"] }, tags: { run } }),
      ];
      await waitFor(() => seen.length >= 2);
      await new Promise((r) => setTimeout(r, 500));
      watch.close();
      await watch.done;
      assert.deepEqual(seen.map((e) => e.pipelineId).sort(), [...ids].sort());
      assert.ok(seen.every((e) => e.type === "PipelineCompleted" && e.tags.run === run));
      assert.ok(seen[1].position > seen[0].position);
      assert.equal(watch.cursor, seen[1].position);
    });
  }

  for (const transport of ["websocket", "sse"]) {
    test(`ends over ${transport} for a pipeline that does not exist, one fully seen, or tags it lacks`, async () => {
      const errors = [];
      const retries = [];
      const missing = client.watch(crypto.randomUUID(), {
        transport,
        reconnect: { minDelayMs: 100, maxDelayMs: 200, notFoundGraceMs: 1_000 },
        onEvent: () => {},
        onError: (e) => errors.push(e),
        onReconnecting: ({ cause }) => retries.push(cause),
      });
      await missing.done;
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof BusFlowApiError && errors[0].code === "pipeline_not_found", `${errors[0]}`);
      // Within the grace, not found was asked again (a child's start may still be on its way).
      assert.ok(retries.length > 0 && retries.every((c) => c instanceof BusFlowApiError && c.code === "pipeline_not_found"), `${retries}`);

      const id = await client.start("wordcount", { input: { texts: ["a"] }, tags: { suite: "ends" } });
      const all = await collect(client.watch(id, { transport }));
      assert.deepEqual(await collect(client.watch(id, { transport, after: all.at(-1).seq }), 10_000), []);
      assert.deepEqual(await collect(client.watch(id, { transport, tags: { suite: "other" } }), 10_000), []);
      assert.equal((await collect(client.watch(id, { transport, tags: { suite: "ends" } }))).length, all.length);
    });
  }

  test("retries a passing problem (503) and then delivers every event", async () => {
    const id = await client.start("wordcount", { input: { texts: ["a b"] } });
    let refusals = 2;
    const refusing = async (url, init) => String(url).includes("/stream") && refusals-- > 0
      ? new Response(JSON.stringify({ status: 503, code: "too_many_connections", title: "Too many connections" }), { status: 503, headers: { "Content-Type": "application/problem+json", "Retry-After": "5" } })
      : fetch(url, init);
    const retries = [];
    const events = await collect(new BusFlowClient({ baseUrl: host.baseUrl, fetch: refusing, reconnect: { minDelayMs: 50 } })
      .watch(id, { transport: "sse", onReconnecting: ({ cause }) => retries.push(cause) }));
    assert.ok(gapless(events) && isFinal(events.at(-1)));
    assert.equal(retries.length, 2);
    assert.ok(retries.every((c) => c instanceof BusFlowApiError && c.code === "too_many_connections" && c.retryAfter === 5));
  });

  test("ends with the handler's error when onEvent throws, with the cursor before that event", async () => {
    const id = await client.start("wordcount", { input: { texts: ["a"] } });
    const errors = [];
    const seen = [];
    const watch = client.watch(id, {
      onEvent: (e) => {
        if (e.seq === 3) throw new Error("handler failed");
        seen.push(e.seq);
      },
      onError: (e) => errors.push(e),
    });
    await watch.done;
    assert.deepEqual(seen, [1, 2]);
    assert.equal(watch.cursor, 2);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof BusFlowError && errors[0].cause?.message === "handler failed");
  });

  test("does not start with a signal that is already aborted", async () => {
    const events = [];
    const errors = [];
    const watch = client.watch("*", { after: 0, signal: AbortSignal.abort(), onEvent: (e) => events.push(e), onError: (e) => errors.push(e) });
    await watch.done;
    assert.deepEqual([events, errors], [[], []]);
    assert.deepEqual(await collect(client.watch("*", { after: 0, signal: AbortSignal.abort() }), 5_000), []);
  });

  test("yields nothing more once closed, though it held events", async () => {
    const id = await client.start("wordcount", { input: { texts: ["a b", "c"] } });
    await collect(client.watch(id));
    const watch = client.watch(id);
    const seen = [];
    for await (const event of watch) {
      seen.push(event.seq);
      await new Promise((r) => setTimeout(r, 300)); // the rest of the history is queued meanwhile
      watch.close();
    }

    assert.deepEqual(seen, [1]);
    assert.equal(watch.cursor, 1);
  });

  test("closes a ws socket still connecting without an uncaught error", async () => {
    for (const wait of [0, 1, 5]) {
      const watch = new BusFlowClient({ baseUrl: host.baseUrl, WebSocket: WebSocketOfWs }).watch("*", { after: 0, onEvent: () => {} });
      await new Promise((r) => setTimeout(r, wait));
      watch.close();
      await watch.done;
    }

    // An uncaught error would have failed this test (and the process) by now.
    await new Promise((r) => setTimeout(r, 200));
  });

  test("reads SSE lines split anywhere, CRLF across chunks included", async () => {
    const id = crypto.randomUUID();
    // Each event's JSON on two data lines (the reader joins them with a line feed).
    const data = (seq, type) => JSON.stringify({ type, pipelineId: id, seq, position: seq, timestamp: "2026-12-03T00:00:00Z", definition: "d", tags: {}, parentPipelineId: null })
      .replace(",", ",\r\ndata: ");
    const text = `: ping\r\n\r\nid: 1\r\nevent: PipelineStarted\r\ndata: ${data(1, "PipelineStarted")}\r\n\r\nid: 2\r\nevent: PipelineCompleted\r\ndata: ${data(2, "PipelineCompleted")}\r\n\r\n`;
    // Chunks that end right after each CR, so every CRLF is split across two reads.
    const chunks = text.split(/(?<=\r)/);
    assert.ok(chunks.length > 5);
    const fetchChunks = async () => new Response(new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(new TextEncoder().encode(chunk));
        controller.close();
      },
    }), { status: 200, headers: { "Content-Type": "text/event-stream" } });
    const events = await collect(new BusFlowClient({ baseUrl: "http://sse.invalid", fetch: fetchChunks }).watch(id, { transport: "sse" }), 5_000);
    assert.deepEqual(events.map((e) => [e.seq, e.type]), [[1, "PipelineStarted"], [2, "PipelineCompleted"]]);
  });

  test("keeps a path the base URL has (an edge behind a proxy)", async () => {
    const slashed = new BusFlowClient({ baseUrl: `${host.baseUrl}/` });
    assert.ok(Array.isArray((await slashed.list()).pipelines));
    const prefixed = new BusFlowClient({ baseUrl: `${host.baseUrl}/prefix` });
    await assert.rejects(prefixed.list(), (error) => error instanceof BusFlowApiError && error.status === 404);
  });

  test("on a WebSocket constructor given in the options (the ws package, for Node.js without a global WebSocket)", async () => {
    const withWs = new BusFlowClient({ baseUrl: host.baseUrl, WebSocket: WebSocketOfWs });
    const id = await withWs.start("wordcount", { input: { texts: ["a b"] } });
    const events = await collect(withWs.watch(id));
    assert.ok(gapless(events));
    assert.equal(events.at(-1).type, "PipelineCompleted");
  });

});

async function waitFor(condition, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error("timed out waiting");
    }

    await new Promise((r) => setTimeout(r, 50));
  }
}
