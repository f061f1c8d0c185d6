import type { BusFlowClient, WatchOptions } from "./client.js";
import { BusFlowApiError, BusFlowConnectionError, BusFlowError, BusFlowSubscriptionError } from "./errors.js";
import { runSse } from "./sse.js";
import { isFinal, type PipelineEvent } from "./types.js";
import { runWebSocket } from "./websocket.js";

/** How a watch reconnects after it lost its connection. */
export interface ReconnectOptions {
  /** The first delay (default 250 ms); it doubles with each failure in a row. */
  minDelayMs?: number;
  /** The cap on the delay (default 5,000 ms). */
  maxDelayMs?: number;
  /** Connections that may fail in a row before the watch gives up with BusFlowConnectionError (default 60: about five minutes at the cap). A connection that delivered an event, or lasted `maxDelayMs`, does not count. */
  maxAttempts?: number;
  /** How long a watch of one pipeline keeps asking for a pipeline the edge does not know (default 10,000 ms) before it ends with `404 pipeline_not_found`: a child's start may still be on its way. */
  notFoundGraceMs?: number;
}

/**
 * Callbacks of a watch; with `onEvent` the watch runs by itself, without iterating it. An error
 * thrown by `onEvent` (or a promise it returns that rejects) ends the watch with a BusFlowError
 * whose `cause` is that error, and the event counts as not delivered (`cursor` stays before it);
 * errors thrown by the other callbacks are ignored.
 */
export interface WatchHandlers {
  /** Each event, once, in order (seq for a pipeline, position for `*`); the next waits until a returned promise settles. */
  onEvent?: (event: PipelineEvent) => void | Promise<void>;
  /** The error that ended the watch: BusFlowSubscriptionError, BusFlowApiError, BusFlowConnectionError, or a BusFlowError for a failed `onEvent`. */
  onError?: (error: BusFlowError) => void;
  /** The connection was lost (or could not be made); the watch tries again after `delayMs`. */
  onReconnecting?: (info: { attempt: number; delayMs: number; cause: unknown }) => void;
  /** Subscribed: events flow (again) from where the watch left off. */
  onConnected?: () => void;
}

/** @internal What a transport reports while a connection lasts. */
export interface TransportSink {
  subscribed(): void;
  /** Hands one event over; true once the watch wants no more (its final event, or closed). */
  event(event: PipelineEvent): Promise<boolean>;
  readonly signal: AbortSignal;
}

/** @internal One connection's subscription: resume from `after`, report to `sink`, end when it closes. */
export interface TransportRequest {
  client: BusFlowClient;
  pipelineId: string;
  after: number;
  options: WatchOptions;
  sink: TransportSink;
}

const defaults = { minDelayMs: 250, maxDelayMs: 5_000, maxAttempts: 60, notFoundGraceMs: 10_000 };

/** Events an iterated watch holds for its reader; past it the connection waits (and the edge's backpressure applies). */
const queueLimit = 1_024;

/**
 * A running watch (see {@link BusFlowClient.watch}): an async iterable of events, or driven by its
 * callbacks. `cursor` is the seq (one pipeline) or position (`*`) of the last event delivered:
 * give it as `after` to a later watch to go on from there.
 */
export class Watch implements AsyncIterable<PipelineEvent> {
  /** Resolves when the watch has ended, for whatever reason (never rejects: errors go to onError or the iterator). */
  readonly done: Promise<void>;
  private readonly stop = new AbortController();
  private readonly queue: PipelineEvent[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly star: boolean;
  private started = false;
  private ended = false;
  private error: BusFlowError | null = null;
  private resolveDone!: () => void;
  private lastCursor: number | null = null;

  constructor(
    private readonly client: BusFlowClient,
    readonly pipelineId: string,
    private readonly options: WatchOptions,
  ) {
    this.star = pipelineId === "*";
    if (!(client.options.fetch ?? globalThis.fetch)) {
      throw new TypeError("No fetch here: pass BusFlowClientOptions.fetch");
    }

    if ((options.transport ?? "websocket") === "websocket" && !(client.options.WebSocket ?? globalThis.WebSocket)) {
      throw new TypeError("No WebSocket here: on Node.js 20 run with --experimental-websocket or pass BusFlowClientOptions.WebSocket (the ws package), or watch with transport: \"sse\"; Node.js 22+ and browsers have one");
    }

    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    const signal = options.signal;
    if (signal?.aborted) {
      this.close();
      return;
    }

    if (signal) {
      const onAbort = () => this.close();
      signal.addEventListener("abort", onAbort, { once: true });
      void this.done.then(() => signal.removeEventListener("abort", onAbort));
    }

    if (options.onEvent) {
      this.begin();
    }
  }

  /** The seq (one pipeline) or position (`*`) of the last event delivered; null before the first. */
  get cursor(): number | null {
    return this.lastCursor;
  }

  /** Ends the watch: the connection closes, and the iterator finishes without the events it still held. */
  close(): void {
    this.queue.length = 0;
    this.stop.abort();
    this.finish(null);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PipelineEvent> {
    if (this.options.onEvent) {
      throw new TypeError("This watch delivers to its onEvent callback; iterate a watch made without one");
    }

    this.begin();
    try {
      for (;;) {
        const next = this.queue.shift();
        if (next !== undefined) {
          this.lastCursor = this.star ? next.position : next.seq;
          this.wake(); // Room again for a connection waiting on a full queue.
          yield next;
          continue;
        }

        if (this.ended) {
          if (this.error) {
            throw this.error;
          }

          return;
        }

        await new Promise<void>((resolve) => this.waiters.push(resolve));
      }
    } finally {
      // A `break` out of the loop ends the watch.
      this.close();
    }
  }

  private begin(): void {
    if (!this.started) {
      this.started = true;
      this.run().catch((error: unknown) => this.finish(error instanceof BusFlowError ? error : new BusFlowError(`The watch of ${this.pipelineId} failed: ${describe(error)}`, { cause: error })));
    }
  }

  private async run(): Promise<void> {
    const policy = { ...defaults, ...this.client.options.reconnect, ...this.options.reconnect };
    const began = Date.now();
    let failures = 0;
    let after = this.options.after ?? null;
    while (!this.stop.signal.aborted) {
      let cause: unknown = null;
      let connectedAt: number | null = null;
      try {
        if (after === null) {
          // One pipeline from its first event; `*` from now: the store's position, read before anything after it.
          after = this.star ? (await this.client.list({ limit: 1, signal: this.stop.signal })).position : 0;
        }

        const request: TransportRequest = {
          client: this.client,
          pipelineId: this.pipelineId,
          after,
          options: this.options,
          sink: {
            signal: this.stop.signal,
            subscribed: () => {
              connectedAt = Date.now();
              safely(() => this.options.onConnected?.());
            },
            event: async (event) => {
              if (this.ended) {
                return true;
              }

              const order = this.star ? event.position : event.seq;
              if (order <= (after ?? 0)) {
                return false; // Already delivered (a replay overlapping what came live).
              }

              // The cursor moves only once the event is handed over.
              if (!(await this.deliver(event))) {
                return true;
              }

              after = order;
              failures = 0;
              if (!this.star && isFinal(event)) {
                this.finish(null);
              }

              return this.ended;
            },
          },
        };
        const finished = (this.options.transport ?? "websocket") === "sse" ? await runSse(request) : await runWebSocket(request);
        if (finished) {
          // The server says this pipeline has nothing after `after` and has ended.
          this.finish(null);
        }
      } catch (error) {
        // A pipeline not found just after it was started (a child whose start is on its way) may be
        // found a moment later: not found counts as final only after the grace.
        const waitForIt = error instanceof BusFlowApiError && error.code === "pipeline_not_found" && Date.now() - began < policy.notFoundGraceMs;
        if (isTerminal(error) && !waitForIt) {
          this.finish(error as BusFlowError);
          return;
        }

        cause = error;
      }

      if (this.ended || this.stop.signal.aborted) {
        return;
      }

      // A connection that lasted does not count against the next ones.
      if (connectedAt !== null && Date.now() - connectedAt >= policy.maxDelayMs) {
        failures = 0;
      }

      failures++;
      if (failures >= policy.maxAttempts) {
        this.finish(new BusFlowConnectionError(
          `Gave up watching ${this.pipelineId} on ${this.client.options.baseUrl}: ${failures} connections failed in a row (last: ${describe(cause)})`,
          failures,
          cause));
        return;
      }

      // Exponential back-off with a cap, and jitter so that many clients do not come back at once.
      const ceiling = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** (failures - 1));
      const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
      safely(() => this.options.onReconnecting?.({ attempt: failures, delayMs, cause }));
      await sleep(delayMs, this.stop.signal);
    }
  }

  /** Hands an event to the callback or the iterator's queue; false when the watch ended meanwhile (or the callback failed, which ends it). */
  private async deliver(event: PipelineEvent): Promise<boolean> {
    if (this.options.onEvent) {
      try {
        await this.options.onEvent(event);
      } catch (error) {
        this.finish(new BusFlowError(`onEvent failed on ${event.type} ${event.pipelineId} seq ${event.seq}: ${describe(error)}`, { cause: error }));
        return false;
      }

      this.lastCursor = this.star ? event.position : event.seq;
      return true;
    }

    // A reader that falls behind holds up the connection, not this process's memory.
    while (this.queue.length >= queueLimit && !this.ended) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }

    if (this.ended) {
      return false;
    }

    this.queue.push(event);
    this.wake();
    return true;
  }

  private finish(error: BusFlowError | null): void {
    if (this.ended) {
      return;
    }

    this.ended = true;
    this.error = error;
    this.stop.abort();
    this.wake();
    this.resolveDone();
    if (error) {
      safely(() => this.options.onError?.(error));
    }
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) {
      waiter();
    }
  }
}

/** Errors a reconnect would only repeat: a refused subscription, or a problem other than a passing one. */
function isTerminal(error: unknown): boolean {
  if (error instanceof BusFlowSubscriptionError) {
    return error.code !== "store_unavailable" && error.code !== "rate_limited";
  }

  if (error instanceof BusFlowApiError) {
    return error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
  }

  return false;
}

/** Runs a notification callback; what it throws is not the watch's concern. */
function safely(callback: () => void): void {
  try {
    callback();
  } catch {
    // Ignored, as documented on WatchHandlers.
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}
