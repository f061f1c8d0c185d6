import { problemOf } from "./errors.js";
import type { PipelineEvent } from "./types.js";
import type { TransportRequest } from "./watch.js";

/** Without a byte for this long (the server writes `: ping` every 15 s), the stream counts as lost. */
const idleTimeoutMs = 45_000;

/**
 * One SSE response of a watch (`GET /api/pipelines/{id}/stream`, or `GET /api/stream` for `*`),
 * read with `fetch` so that it works in Node.js and browsers alike and sends credentials as
 * headers: resumes from `after`, hands each event to the sink, and returns when the response ends
 * (false: reconnect) or the watch wants no more. `204 No Content` (the pipeline ended at or
 * before `after`) returns true. A problem answer throws BusFlowApiError.
 */
export async function runSse({ client, pipelineId, after, options, sink }: TransportRequest): Promise<boolean> {
  const query = new URLSearchParams({ after: String(after) });
  if (options.eventTypes && options.eventTypes.length > 0) {
    query.set("eventTypes", options.eventTypes.join(","));
  }

  for (const [key, value] of Object.entries(options.tags ?? {})) {
    query.append("tag", `${key}=${value}`);
  }

  const abort = new AbortController();
  const onAbort = () => abort.abort();
  sink.signal.addEventListener("abort", onAbort, { once: true });
  if (sink.signal.aborted) {
    abort.abort();
  }

  let idle: ReturnType<typeof setTimeout> | undefined;
  const resetIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(new Error(`no data from the server for ${idleTimeoutMs} ms`)), idleTimeoutMs);
  };

  try {
    resetIdle();
    const path = pipelineId === "*" ? "/api/stream" : `/api/pipelines/${encodeURIComponent(pipelineId)}/stream`;
    const response = await client.fetchWithAuth(`${path}?${query}`, {
      method: "GET",
      headers: { Accept: "text/event-stream" },
      signal: abort.signal,
      cache: "no-store",
    });
    if (response.status === 204) {
      return true;
    }

    if (!response.ok || !response.body) {
      throw problemOf(response, await response.text());
    }

    sink.subscribed();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data: string[] = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return false;
      }

      resetIdle();
      buffer += value;
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        if (newline === buffer.length - 1 && buffer[newline] === "\r") {
          break; // A CR at the end of a chunk may be the first half of a CRLF: wait for the next chunk.
        }

        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          // A blank line dispatches the event (its id and type are inside its JSON too).
          if (data.length > 0) {
            const event = JSON.parse(data.join("\n")) as PipelineEvent;
            data = [];
            // The server is not idle while the reader takes its time.
            clearTimeout(idle);
            const enough = await sink.event(event);
            resetIdle();
            if (enough) {
              await reader.cancel().catch(() => {});
              return false;
            }
          }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
        // `id:`, `event:` and `: ping` comments need nothing more.
      }
    }
  } catch (error) {
    if (sink.signal.aborted) {
      return false;
    }

    throw abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason : error;
  } finally {
    clearTimeout(idle);
    sink.signal.removeEventListener("abort", onAbort);
    // However the reading ended, the response goes: the server frees the connection at once.
    abort.abort();
  }
}
