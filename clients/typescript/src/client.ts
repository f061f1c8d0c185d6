import { problemOf, type BusFlowApiError } from "./errors.js";
import type { Definition, DefinitionVersion, EventPage, Json, PipelineEventType, PipelineList, PipelineStatus } from "./types.js";
import { Watch, type ReconnectOptions, type WatchHandlers } from "./watch.js";

/** A WebSocket constructor: the browser's, Node 22's, or one given (Node 20: the `ws` package, or run with --experimental-websocket). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocket;

export interface BusFlowClientOptions {
  /** Where the edge is, e.g. `http://localhost:5080`. In a page served by the edge, `location.origin`. */
  baseUrl: string;
  /** An API key (`BusFlow:Edge:Auth:ApiKeys`): sent as `X-Api-Key`, and as `access_token` where headers cannot be set (browser WebSockets). */
  apiKey?: string;
  /** A JWT: sent as `Authorization: Bearer`, and as `access_token` on browser WebSockets. */
  token?: string;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Defaults to the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Reconnect policy of every watch (each watch may override it). */
  reconnect?: ReconnectOptions;
}

export interface StartOptions {
  input?: Json;
  tags?: Record<string, string>;
  /** The same key with the same request starts one pipeline (docs/protocol.md, "POST /api/pipelines"). */
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface WatchOptions extends WatchHandlers {
  /** Only these event types; a pipeline's final event always comes (a `*` watch gets only these). */
  eventTypes?: PipelineEventType[];
  /** Only events carrying all these tags. */
  tags?: Record<string, string>;
  /**
   * Where to start: a seq for one pipeline (default 0: from its first event), a position for `*`
   * (default: from now, the store's position when the watch starts).
   */
  after?: number;
  /** `websocket` (default) or `sse` where WebSockets are blocked. */
  transport?: "websocket" | "sse";
  /** Ends the watch. */
  signal?: AbortSignal;
  reconnect?: ReconnectOptions;
}

/**
 * BusFlow's web edge from a browser or Node.js 20+: the HTTP API (start, cancel, status, answer,
 * list), with problem details as {@link BusFlowApiError}, and {@link watch}, which follows one
 * pipeline or every pipeline over a WebSocket (or SSE) and survives disconnects and server
 * restarts, delivering every event once and in order.
 */
export class BusFlowClient {
  readonly options: Readonly<BusFlowClientOptions>;

  constructor(options: BusFlowClientOptions | string) {
    this.options = typeof options === "string" ? { baseUrl: options } : { ...options };
    if (!this.options.baseUrl) {
      throw new TypeError("BusFlowClient needs a baseUrl, e.g. http://localhost:5080");
    }
  }

  /** Starts a pipeline of `definition`; resolves with its id. */
  async start(definition: string, options: StartOptions = {}): Promise<string> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (options.idempotencyKey !== undefined) {
      headers["Idempotency-Key"] = options.idempotencyKey;
    }

    const body = JSON.stringify({ definition, input: options.input, tags: options.tags });
    const answer = await this.request<{ pipelineId: string }>("POST", "/api/pipelines", { body, headers, signal: options.signal });
    return answer.pipelineId;
  }

  /** Cancels a running pipeline (`409 pipeline_finished` when it is not). */
  async cancel(pipelineId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.request("POST", `/api/pipelines/${encodeURIComponent(pipelineId)}/cancel`, { signal: options.signal });
  }

  /** The pipeline's state: status, steps, attempts, timestamps. */
  status(pipelineId: string, options: { signal?: AbortSignal } = {}): Promise<PipelineStatus> {
    return this.request<PipelineStatus>("GET", `/api/pipelines/${encodeURIComponent(pipelineId)}`, { signal: options.signal });
  }

  /** Answers a suspended step (`StepSuspended.suspendId`); the answer is any JSON. */
  async answer(pipelineId: string, suspendId: string, payload: Json, options: { idempotencyKey?: string; signal?: AbortSignal } = {}): Promise<void> {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (options.idempotencyKey !== undefined) {
      headers["Idempotency-Key"] = options.idempotencyKey;
    }

    await this.request("POST", `/api/pipelines/${encodeURIComponent(pipelineId)}/actions/${encodeURIComponent(suspendId)}`, {
      body: JSON.stringify(payload),
      headers,
      signal: options.signal,
    });
  }

  /** The latest pipelines the caller may see, newest first, and the position to watch `*` from. */
  list(options: { limit?: number; signal?: AbortSignal } = {}): Promise<PipelineList> {
    const query = options.limit === undefined ? "" : `?limit=${options.limit}`;
    return this.request<PipelineList>("GET", `/api/pipelines${query}`, { signal: options.signal });
  }

  /** A page of one pipeline's stored events after `after` (a seq); with `waitMs`, waits that long for a new one when there is none. */
  events(pipelineId: string, options: { after?: number; limit?: number; waitMs?: number; signal?: AbortSignal } = {}): Promise<EventPage> {
    const query = new URLSearchParams();
    for (const key of ["after", "limit", "waitMs"] as const) {
      if (options[key] !== undefined) {
        query.set(key, String(options[key]));
      }
    }

    return this.request<EventPage>("GET", `/api/pipelines/${encodeURIComponent(pipelineId)}/events?${query}`, { signal: options.signal });
  }

  /** The definitions registered with the edge's process, each in the version new pipelines start on. */
  definitions(options: { signal?: AbortSignal } = {}): Promise<Definition[]> {
    return this.request<Definition[]>("GET", "/api/definitions", { signal: options.signal });
  }

  /** Every definition version registered or still running, with how many pipelines run on each. */
  definitionVersions(options: { signal?: AbortSignal } = {}): Promise<DefinitionVersion[]> {
    return this.request<DefinitionVersion[]>("GET", "/api/definitions/versions", { signal: options.signal });
  }

  /** One registered version of a definition (`404 definition_version_not_found` when the edge's process lacks it). */
  definition(name: string, version: string, options: { signal?: AbortSignal } = {}): Promise<Definition> {
    return this.request<Definition>("GET", `/api/definitions/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`, { signal: options.signal });
  }

  /**
   * Follows one pipeline (its events after `after`, until its final event) or every pipeline the
   * caller may see (`*`, until closed). Iterate it with `for await`, or pass `onEvent` and the
   * watch runs by itself. It reconnects with back-off and jitter after a lost connection or a
   * server restart and resumes after the last event it delivered, so each event arrives once and
   * in order; after `reconnect.maxAttempts` failed connections in a row it ends with
   * {@link BusFlowConnectionError}.
   */
  watch(pipelineId: string, options: WatchOptions = {}): Watch {
    return new Watch(this, pipelineId, options);
  }

  /** Any request to the edge with the client's credentials; a problem answer throws {@link BusFlowApiError}. */
  async request<T>(method: string, path: string, init: { body?: string; headers?: Record<string, string>; signal?: AbortSignal | undefined } = {}): Promise<T> {
    const response = await this.fetchWithAuth(path, { method, body: init.body, headers: init.headers, signal: init.signal });
    const text = await response.text();
    if (!response.ok) {
      throw problemOf(response, text);
    }

    return (text.length === 0 ? undefined : JSON.parse(text)) as T;
  }

  /** @internal `fetch` on the edge with the client's credentials. */
  fetchWithAuth(path: string, init: RequestInit & { headers?: Record<string, string> | undefined }): Promise<Response> {
    const doFetch = this.options.fetch ?? globalThis.fetch;
    if (!doFetch) {
      throw new TypeError("No fetch here: pass BusFlowClientOptions.fetch");
    }

    return doFetch(this.url(path), { ...init, headers: { ...this.authHeaders(), ...(init.headers ?? {}) } });
  }

  /** @internal The edge's URL for `path` (from `/`), keeping a path the base URL has (an edge behind a proxy at /busflow). */
  url(path: string): URL {
    return new URL(this.options.baseUrl.replace(/\/+$/, "") + path);
  }

  /** @internal */
  authHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    if (this.options.apiKey) {
      headers["X-Api-Key"] = this.options.apiKey;
    }

    if (this.options.token) {
      headers["Authorization"] = `Bearer ${this.options.token}`;
    }

    return headers;
  }
}
