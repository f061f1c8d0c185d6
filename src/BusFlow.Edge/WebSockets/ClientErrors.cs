namespace BusFlow.Edge.WebSockets;

/// <summary>The codes of <c>{"type":"error"}</c> frames (docs/protocol.md). The socket stays open after each.</summary>
internal static class ClientErrors
{
    public const string InvalidJson = "invalid_json";
    public const string InvalidMessage = "invalid_message";
    public const string InvalidString = "invalid_string";
    public const string UnknownType = "unknown_type";
    public const string BinaryNotSupported = "binary_not_supported";
    public const string FrameTooLarge = "frame_too_large";
    public const string RateLimited = "rate_limited";
    public const string InvalidPipelineId = "invalid_pipeline_id";
    public const string UnknownEventType = "unknown_event_type";
    public const string TooManySubscriptions = "too_many_subscriptions";
    public const string AfterOutOfRange = "after_out_of_range";
    public const string NotSubscribed = "not_subscribed";
    public const string StoreUnavailable = "store_unavailable";
}
