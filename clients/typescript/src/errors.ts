import type { ProblemCode, ProblemDetails, SubscriptionErrorCode } from "./types.js";

/** Every error this client throws. */
export class BusFlowError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The HTTP API answered with a problem (docs/protocol.md, "Errors"): branch on `code`.
 * `status` is the HTTP status; `problem` the whole problem body, when there was one.
 */
export class BusFlowApiError extends BusFlowError {
  readonly status: number;
  readonly code: ProblemCode | string;
  readonly problem: ProblemDetails | null;
  /** Seconds from `Retry-After`, for 503 answers that carry it. */
  readonly retryAfter: number | null;

  constructor(status: number, code: ProblemCode | string, message: string, problem: ProblemDetails | null, retryAfter: number | null) {
    super(message);
    this.status = status;
    this.code = code;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/**
 * The server refused a WebSocket subscription (an `error` frame): a bad filter, an `after` beyond
 * the last event, too many subscriptions. Reconnecting would not help, so the watch ends with it.
 * (An SSE request's refusal is a problem answer: BusFlowApiError.)
 */
export class BusFlowSubscriptionError extends BusFlowError {
  readonly code: SubscriptionErrorCode | ProblemCode | string;
  readonly pipelineId: string | null;

  constructor(code: string, message: string, pipelineId: string | null) {
    super(message);
    this.code = code;
    this.pipelineId = pipelineId;
  }
}

/** A watch gave up reconnecting: `attempts` connections in a row failed. `cause` is the last failure. */
export class BusFlowConnectionError extends BusFlowError {
  readonly attempts: number;

  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { cause });
    this.attempts = attempts;
  }
}

/** @internal The error for a problem answer (or any other failed answer). */
export function problemOf(response: Response, text: string): BusFlowApiError {
  let problem: ProblemDetails | null = null;
  if (text.length > 0) {
    try {
      const parsed: unknown = JSON.parse(text);
      problem = parsed !== null && typeof parsed === "object" ? (parsed as ProblemDetails) : null;
    } catch {
      problem = null;
    }
  }

  const code = problem?.code ?? `http_${response.status}`;
  const message = [problem?.title, problem?.detail].filter((s) => s).join(": ") || `${response.status} ${response.statusText}`.trim();
  const retryAfterHeader = response.headers.get("Retry-After");
  const retryAfter = retryAfterHeader !== null && /^\d+$/.test(retryAfterHeader) ? Number(retryAfterHeader) : null;
  return new BusFlowApiError(response.status, code, message, problem, retryAfter);
}
