// The wire contract of docs/protocol.md as TypeScript types: events, the HTTP API's bodies and the
// WebSocket's frames. JSON values the protocol leaves open (inputs, results, answers) are `Json`.

/** Any JSON value. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** A pipeline's status. */
export type PipelineStatusName = "Running" | "Completed" | "Failed" | "Cancelled";

/** `{"kind","message"}`: why a step or pipeline failed (docs/protocol.md, "Error kinds"). */
export interface StepError {
  kind: string;
  message: string;
}

/** The fields every event has (docs/protocol.md, "Fields of every event"). */
export interface EventEnvelope {
  /** The event type name. */
  type: string;
  pipelineId: string;
  /** 1, 2, 3, ... per pipeline, no gaps. */
  seq: number;
  /** Store-wide position, in commit order, contiguous from 1. */
  position: number;
  /** When the saga decided the event (ISO 8601). */
  timestamp: string;
  definition: string;
  tags: Record<string, string>;
  parentPipelineId: string | null;
  /** W3C traceparent of the transition that decided the event, when traced. */
  traceParent?: string | null;
}

/** The fields step events add. */
export interface StepEventFields {
  stepName: string;
  /** The step's position in the definition's topological order. */
  stepIndex: number;
  /** From 1. */
  attempt: number;
  /** Map steps: the item; null for task and child steps and for the map step's final StepCompleted. */
  itemIndex: number | null;
}

export interface PipelineStarted extends EventEnvelope {
  type: "PipelineStarted";
  input: Json;
  parentStepName: string | null;
  /** Null on events stored before versions were recorded. */
  definitionVersion: string | null;
}

export interface StepStarted extends EventEnvelope, StepEventFields {
  type: "StepStarted";
  childPipelineId: string | null;
}

export interface StepProgress extends EventEnvelope, StepEventFields {
  type: "StepProgress";
  percent: number | null;
  message: string | null;
  chunk: Json;
}

export interface StepCompleted extends EventEnvelope, StepEventFields {
  type: "StepCompleted";
  durationMs: number;
  result: Json;
}

export interface StepFailed extends EventEnvelope, StepEventFields {
  type: "StepFailed";
  durationMs: number;
  error: StepError;
  willRetry: boolean;
  retryAt: string | null;
}

export interface StepSuspended extends EventEnvelope, StepEventFields {
  type: "StepSuspended";
  suspendId: string;
  reason: string | null;
  request: Json;
  expiresAt: string | null;
}

export interface PipelineCompleted extends EventEnvelope {
  type: "PipelineCompleted";
  durationMs: number;
  outputs: Record<string, Json>;
}

export interface PipelineFailed extends EventEnvelope {
  type: "PipelineFailed";
  durationMs: number;
  failedStep: string | null;
  error: StepError;
}

export interface PipelineCancelled extends EventEnvelope {
  type: "PipelineCancelled";
  durationMs: number;
  reason: string | null;
}

/** Every event type of docs/protocol.md, discriminated by `type`. */
export type PipelineEvent =
  | PipelineStarted
  | StepStarted
  | StepProgress
  | StepCompleted
  | StepFailed
  | StepSuspended
  | PipelineCompleted
  | PipelineFailed
  | PipelineCancelled;

/** The event type names. */
export type PipelineEventType = PipelineEvent["type"];

/** Every event type name, for validating filters before they are sent. */
export const eventTypes: readonly PipelineEventType[] = [
  "PipelineStarted",
  "StepStarted",
  "StepProgress",
  "StepCompleted",
  "StepFailed",
  "StepSuspended",
  "PipelineCompleted",
  "PipelineFailed",
  "PipelineCancelled",
];

/** The types of the events after which a pipeline has no more. */
export const finalEventTypes: readonly PipelineEventType[] = ["PipelineCompleted", "PipelineFailed", "PipelineCancelled"];

/** The events after which a pipeline has no more. */
export type FinalEvent = PipelineCompleted | PipelineFailed | PipelineCancelled;

/** True for PipelineCompleted, PipelineFailed and PipelineCancelled. */
export function isFinal(event: PipelineEvent): event is FinalEvent {
  return event.type === "PipelineCompleted" || event.type === "PipelineFailed" || event.type === "PipelineCancelled";
}

/** A step's status in `GET /api/pipelines/{id}`. */
export type StepStatusName = "Pending" | "Running" | "Completed" | "Failed" | "Cancelled" | "Skipped";

/** A work item's status (one per task or child step, one per map element). */
export type WorkItemStatusName = "Pending" | "Running" | "WaitingRetry" | "Suspended" | "Completed" | "Failed" | "Cancelled";

export interface WorkItemStatus {
  index: number | null;
  status: WorkItemStatusName;
  attempt: number;
  dueAt: string | null;
  error: StepError | null;
  suspendId: string | null;
  childPipelineId: string | null;
}

export interface StepStatus {
  name: string;
  status: StepStatusName;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  result: Json;
  error: StepError | null;
  items: WorkItemStatus[];
}

/** `GET /api/pipelines/{id}`: the pipeline's saga state as the store has it. */
export interface PipelineStatus {
  pipelineId: string;
  definition: string;
  definitionVersion: string;
  tags: Record<string, string>;
  parentPipelineId: string | null;
  input: Json;
  status: PipelineStatusName;
  lastSeq: number;
  startedAt: string;
  finishedAt: string | null;
  failedStep: string | null;
  error: StepError | null;
  steps: StepStatus[];
}

/** One row of `GET /api/pipelines`. */
export interface PipelineSummary {
  pipelineId: string;
  definition: string;
  /** The definition version the pipeline runs on (empty before versions were recorded). */
  definitionVersion: string;
  status: PipelineStatusName;
  tags: Record<string, string>;
  parentPipelineId: string | null;
  lastSeq: number;
  startedAt: string;
  finishedAt: string | null;
  /** Steps in the definition. */
  stepsTotal: number;
  /** Names of the steps with status Completed. */
  completedSteps: string[];
}

/** `GET /api/pipelines`: the latest pipelines, newest first, and the store's position read before them. */
export interface PipelineList {
  pipelines: PipelineSummary[];
  /** Watch `*` with `after` = this position to miss nothing that happened after the list was read. */
  position: number;
}

/** A step of a definition, as `GET /api/definitions` shows it. */
export interface DefinitionStep {
  name: string;
  index: number;
  level: number;
  kind: "Task" | "Map" | "Child";
  worker: string | null;
  childDefinition: string | null;
  dependsOn: string[];
  consumes: string[];
  produces: string;
  over: string | null;
  maxAttempts: number;
  timeoutMs: number | null;
  onFailure: "FailPipeline" | "ContinueIndependent";
  maxParallelism: number | null;
}

/** A definition in the version new pipelines start on (`GET /api/definitions`). */
export interface Definition {
  name: string;
  version: string;
  drainingVersions: string[];
  input: { name: string; kind: string; required: boolean }[] | null;
  steps: DefinitionStep[];
  edges: { from: string; to: string }[];
  levels: string[][];
}

/** A row of `GET /api/definitions/versions`. */
export interface DefinitionVersion {
  definition: string;
  version: string;
  current: boolean;
  registered: boolean;
  running: number;
}

/** A page of `GET /api/pipelines/{id}/events` (long-poll): events in seq order; poll again with `after` = `next`. */
export interface EventPage {
  events: PipelineEvent[];
  next: number;
}

/** The body of `POST /api/pipelines`. */
export interface StartPipelineRequest {
  definition: string;
  input?: Json;
  tags?: Record<string, string>;
}

/** A WebSocket subscribe message (client to server). */
export interface SubscribeMessage {
  type: "subscribe";
  pipelineId: string;
  eventTypes?: PipelineEventType[] | null;
  tags?: Record<string, string> | null;
  after?: number | null;
  batch?: boolean;
}

/** Messages the client sends on the WebSocket. */
export type ClientMessage = SubscribeMessage | { type: "unsubscribe"; pipelineId: string } | { type: "ping" };

/** The WebSocket error codes of docs/protocol.md. */
export type SubscriptionErrorCode =
  | "invalid_json"
  | "invalid_string"
  | "invalid_message"
  | "unknown_type"
  | "binary_not_supported"
  | "frame_too_large"
  | "rate_limited"
  | "invalid_pipeline_id"
  | "unknown_event_type"
  | "too_many_subscriptions"
  | "after_out_of_range"
  | "not_subscribed"
  | "store_unavailable";

/** Frames the server sends on the WebSocket. */
export type ServerFrame =
  | { type: "subscribed"; pipelineId: string; batch?: boolean }
  | { type: "unsubscribed"; pipelineId: string }
  | { type: "pong" }
  | { type: "events"; events: PipelineEvent[] }
  | { type: "error"; code: SubscriptionErrorCode | string; message: string; pipelineId?: string }
  | PipelineEvent;

/** The problem codes of the HTTP API (docs/protocol.md, "Errors"). */
export type ProblemCode =
  | "invalid_json"
  | "invalid_string"
  | "invalid_body"
  | "invalid_tags"
  | "tags_too_large"
  | "input_too_large"
  | "tenant_tag_reserved"
  | "invalid_idempotency_key"
  | "invalid_pipeline_id"
  | "invalid_suspend_id"
  | "invalid_query"
  | "websocket_required"
  | "host_not_allowed"
  | "unauthorized"
  | "origin_not_allowed"
  | "pipeline_not_found"
  | "suspension_not_found"
  | "definition_version_not_found"
  | "idempotency_key_reused"
  | "pipeline_finished"
  | "suspension_closed"
  | "body_too_large"
  | "insecure_listener"
  | "unknown_definition"
  | "invalid_input"
  | "unknown_event_type"
  | "broker_unavailable"
  | "too_many_connections"
  | "shutting_down";

/** An RFC 7807 problem with BusFlow's `code` member. */
export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: ProblemCode | string;
  traceId?: string;
  /** `invalid_input`: what does not fit the definition's declared input. */
  errors?: string[];
}
