namespace BusFlow.Edge.Live;

/// <summary>
/// The WebSocket close codes the edge uses (docs/protocol.md), for WebSocket connections and, as the
/// reason a connection ends, for SSE and long-poll alike.
/// </summary>
internal static class CloseCodes
{
    /// <summary>The exchange is over (the client closed, or a pipeline's stream finished).</summary>
    public const int Normal = 1000;

    /// <summary>The server is going away: reconnect (to another node) and resume.</summary>
    public const int GoingAway = 1001;

    /// <summary>The server failed to go on (a replay that could not be read): resume later.</summary>
    public const int InternalError = 1011;

    /// <summary>Too many connections: try again later.</summary>
    public const int TryAgainLater = 1013;

    /// <summary>The connection fell too far behind: reconnect and resume with <c>after</c>.</summary>
    public const int Resume = 4000;
}
