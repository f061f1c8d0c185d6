import { BusFlowApiError, BusFlowSubscriptionError } from "./errors.js";
import { finalEventTypes, type PipelineEvent, type ServerFrame, type SubscribeMessage } from "./types.js";
import type { TransportRequest } from "./watch.js";

/** Without a frame for this long after a ping, the connection counts as lost. */
const pingIntervalMs = 15_000;

/** Frames received and not yet handed over (up to 512 events each) before a slow reader is let go. */
const maxPendingFrames = 16;

/**
 * One WebSocket connection of a watch: subscribes from `after` (events in batches) and hands each
 * event to the sink until the socket closes (resolves false: reconnect), the watch wants no more
 * (resolves false after closing), or the server refuses the subscription (rejects with
 * BusFlowSubscriptionError). A handshake refused for auth rejects with the API's 401 or 403. For
 * one pipeline, its status is read once subscribed: one that does not exist for the caller rejects
 * with `404 pipeline_not_found`, one that ended at or before `after` resolves true.
 */
export async function runWebSocket({ client, pipelineId, after, options, sink }: TransportRequest): Promise<boolean> {
  // The watch checked that there is one.
  const Socket = (client.options.WebSocket ?? globalThis.WebSocket)!;

  const url = client.url("/ws");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // Browsers' WebSockets cannot set headers: the edge takes the credentials as access_token.
  const credential = client.options.apiKey ?? client.options.token;
  if (credential) {
    url.searchParams.set("access_token", credential);
  }

  const socket = new Socket(url.toString());
  let opened = false;
  let frames: Promise<void> = Promise.resolve();
  let lastFrame = Date.now();
  let pending = 0;
  const subscribe: SubscribeMessage = {
    type: "subscribe",
    pipelineId,
    after,
    // A pipeline's watch ends at its final event, which comes whatever the filter (as on SSE).
    eventTypes: options.eventTypes && options.eventTypes.length > 0 && pipelineId !== "*"
      ? [...new Set([...options.eventTypes, ...finalEventTypes])]
      : options.eventTypes ?? null,
    tags: options.tags ?? null,
    batch: true,
  };

  const outcome = await new Promise<{ error?: unknown; cause?: unknown; finished?: boolean }>((resolve) => {
    const heartbeat = setInterval(() => {
      if (Date.now() - lastFrame > 2 * pingIntervalMs) {
        settle({ cause: new Error(`no frame from the server for ${2 * pingIntervalMs} ms`) });
        return;
      }

      if (socket.readyState === 1) {
        socket.send(JSON.stringify({ type: "ping" }));
      }
    }, pingIntervalMs);
    const onAbort = () => settle({});
    sink.signal.addEventListener("abort", onAbort, { once: true });

    let settled = false;
    function settle(result: { error?: unknown; cause?: unknown; finished?: boolean }) {
      if (settled) {
        return;
      }

      settled = true;
      clearInterval(heartbeat);
      sink.signal.removeEventListener("abort", onAbort);
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      // Not null: the ws package emits an error when a socket still connecting is closed, and an
      // error without a listener ends a Node process.
      socket.onerror = () => {};
      if (socket.readyState === 0 || socket.readyState === 1) {
        try {
          socket.close(1000);
        } catch {
          // Closing a socket that is still connecting throws in some runtimes; it is dropped either way.
        }
      }

      resolve(result);
    }

    socket.onopen = () => {
      opened = true;
      lastFrame = Date.now();
      socket.send(JSON.stringify(subscribe));
    };
    socket.onmessage = (message: MessageEvent) => {
      lastFrame = Date.now();
      // A WebSocket cannot pause reading: a reader this far behind is let go, and the watch resumes
      // from its cursor once the reader caught up (the frames not yet handed over are dropped).
      if (++pending > maxPendingFrames) {
        settle({ cause: new Error(`the reader fell ${maxPendingFrames} frames behind; resuming from its cursor`) });
        return;
      }

      // Frames are handled one after another, in order, even when a handler waits.
      frames = frames.then(async () => {
        pending--;
        if (settled || typeof message.data !== "string") {
          return;
        }

        const frame = JSON.parse(message.data) as ServerFrame;
        switch (frame.type) {
          case "subscribed":
            if (frame.pipelineId === pipelineId || pipelineId !== "*" && frame.pipelineId.toLowerCase() === pipelineId.toLowerCase()) {
              sink.subscribed();
              if (pipelineId !== "*") {
                // The WebSocket accepts a pipeline that does not exist (or is another tenant's), one that
                // ended at or before `after` and one whose tags the filter excludes, and then sends
                // nothing: end such a watch as SSE does.
                client.status(pipelineId, { signal: sink.signal }).then(
                  (status) => {
                    const tagged = Object.entries(options.tags ?? {}).every(([key, value]) => status.tags[key] === value);
                    if ((status.status !== "Running" && status.lastSeq <= after) || !tagged) {
                      settle({ finished: true });
                    }
                  },
                  // 404: no such pipeline for this caller (the watch decides whether to wait for it);
                  // anything else: connect and ask again, rather than wait in silence.
                  (error: unknown) => settle(error instanceof BusFlowApiError && error.status === 404 ? { error } : { cause: error }));
              }
            }

            return;
          case "unsubscribed":
          case "pong":
            return;
          case "error":
            settle({ error: new BusFlowSubscriptionError(frame.code, frame.message, frame.pipelineId ?? null) });
            return;
          case "events":
            for (const event of frame.events) {
              if (await sink.event(event)) {
                settle({});
                return;
              }
            }

            return;
          default:
            if (await sink.event(frame as PipelineEvent)) {
              settle({});
            }
        }
      }).catch((error: unknown) => settle({ cause: error }));
    };
    socket.onclose = (close: CloseEvent) => {
      // Events of frames already received are handed over before the watch reconnects.
      void frames.then(() => settle({ cause: new Error(`closed by the server: ${close.code} ${close.reason}`.trim()) }));
    };
    socket.onerror = () => {
      // A close follows an error; a socket that never opened may not close in every runtime.
      if (!opened) {
        settle({ cause: new Error("the WebSocket could not connect") });
      }
    };

    // Closed while this connection was being made: an abort listener added now would never fire.
    if (sink.signal.aborted) {
      settle({});
    }
  });

  // No event of this connection is handed over once the next connection may be delivering.
  await frames.catch(() => {});
  if (outcome.error) {
    throw outcome.error;
  }

  if (outcome.cause) {
    if (!opened) {
      // A refused handshake says nothing to a WebSocket client: ask the API why, so that bad
      // credentials end the watch (401, 403) instead of retrying for ever.
      await client.request("GET", "/api/pipelines?limit=1", { signal: sink.signal }).catch((error: unknown) => {
        if (error instanceof BusFlowApiError && (error.status === 401 || error.status === 403)) {
          throw error;
        }
      });
    }

    throw outcome.cause;
  }

  return outcome.finished === true;
}
