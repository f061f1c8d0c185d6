namespace BusFlow.Client;

/// <summary>Where the edge is and how to authenticate to it.</summary>
public sealed class BusFlowClientOptions
{
    /// <summary>The edge's base address, for example <c>http://localhost:5080</c>.</summary>
    public required Uri BaseAddress { get; init; }

    /// <summary>An API key, sent as <c>X-Api-Key</c> (and as <c>access_token</c> on the WebSocket).</summary>
    public string? ApiKey { get; init; }

    /// <summary>A JWT bearer token, sent as <c>Authorization: Bearer</c>.</summary>
    public string? BearerToken { get; init; }

    /// <summary>The first wait before reconnecting a watch; doubles up to <see cref="MaxReconnectDelay"/>.</summary>
    public TimeSpan MinReconnectDelay { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>The longest wait between reconnect attempts.</summary>
    public TimeSpan MaxReconnectDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a watch keeps trying to reconnect before it gives up with the last error; infinite by default.</summary>
    public TimeSpan ReconnectTimeout { get; init; } = Timeout.InfiniteTimeSpan;
}
