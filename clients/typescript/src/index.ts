// BusFlow's client for browsers and Node.js 20+ (docs/clients.md).
export { BusFlowClient } from "./client.js";
export type { BusFlowClientOptions, StartOptions, WatchOptions, WebSocketConstructor } from "./client.js";
export { Watch } from "./watch.js";
export type { ReconnectOptions, WatchHandlers } from "./watch.js";
export { BusFlowError, BusFlowApiError, BusFlowSubscriptionError, BusFlowConnectionError } from "./errors.js";
export * from "./types.js";
