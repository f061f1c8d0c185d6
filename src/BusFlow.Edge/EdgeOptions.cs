using System.ComponentModel.DataAnnotations;

namespace BusFlow.Edge;

/// <summary>The web edge's limits, auth and timings (configuration section <c>BusFlow:Edge</c>).</summary>
public sealed class EdgeOptions
{
    public const string Section = "BusFlow:Edge";

    /// <summary>Open WebSocket and SSE connections at most; the next one is refused (WebSocket close 1013).</summary>
    [Range(1, 1_000_000)]
    public int MaxConnections { get; set; } = 10_000;

    /// <summary>
    /// Open WebSocket and SSE connections and waiting long-polls one tenant may hold at once on this
    /// node (its fair share); the next is refused (WebSocket close 1013, HTTP 503 with Retry-After)
    /// while other tenants keep connecting. Callers without a tenant (no auth, an all-tenants role)
    /// have no share of their own. 0: no per-tenant limit.
    /// </summary>
    [Range(0, 1_000_000)]
    public int MaxConnectionsPerTenant { get; set; } = 1_000;

    /// <summary>Subscriptions one WebSocket may hold at once.</summary>
    [Range(1, 100_000)]
    public int MaxSubscriptionsPerConnection { get; set; } = 100;

    /// <summary>The largest client frame, in bytes; a larger one is discarded with a <c>frame_too_large</c> error.</summary>
    [Range(256, 16 * 1024 * 1024)]
    public int MaxFrameBytes { get; set; } = 16 * 1024;

    /// <summary>Client messages per second per connection (burst of the same size); more get <c>rate_limited</c>.</summary>
    [Range(1, 1_000_000)]
    public int MaxMessagesPerSecond { get; set; } = 50;

    /// <summary>
    /// Events buffered per connection. When the buffer is full the subscriber is served from the store until it catches up.
    /// Live events are shared between connections (a slot holds a reference); a replayed one holds its own frame, so
    /// a connection catching up holds at most this many frames (about 1.4 MB at 334-byte events).
    /// </summary>
    [Range(1, 1_000_000)]
    public int OutboundBuffer { get; set; } = 4096;

    /// <summary>How long a connection may make no progress with events waiting before it is closed with code 4000 (resume).</summary>
    public TimeSpan StallTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often idle connections are pinged (WebSocket keep-alive, SSE comment).</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// When the saga's store commits in this process, take its events from it as they commit instead
    /// of waiting for the bus's copy (which still comes and is dropped as a repeat): one broker round
    /// trip less between a step and its subscribers. Events committed by other processes come by the
    /// bus as ever.
    /// </summary>
    public bool TakeCommittedEventsInProcess { get; set; } = true;

    /// <summary>How long live events may wait for an earlier position before the gap is read from the store.</summary>
    public TimeSpan GapTimeout { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// How long the live feed goes without an event before it asks the store whether it holds events
    /// the bus never brought (lost at the tail, with no later event to reveal the gap). One small
    /// query per edge node per interval while idle; none while events flow.
    /// </summary>
    public TimeSpan TailCheck { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How long shutdown lets connections drain their buffers before closing them with 1001.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long <c>POST /api/pipelines</c> waits for the saga to record the start before answering 202 anyway.</summary>
    public TimeSpan StartWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a command the API publishes for the saga (start, cancel, action) may wait for the
    /// broker; a broker that fails it or stays silent longer answers <c>503 broker_unavailable</c>.
    /// </summary>
    public TimeSpan BrokerTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Tags one pipeline may carry (they are copied onto every event it records); more get <c>400 tags_too_large</c>.</summary>
    [Range(1, 1000)]
    public int MaxTags { get; set; } = 32;

    /// <summary>The longest tag key, in characters.</summary>
    [Range(1, 1024)]
    public int MaxTagKeyLength { get; set; } = 64;

    /// <summary>The longest tag value, in characters.</summary>
    [Range(1, 65536)]
    public int MaxTagValueLength { get; set; } = 256;

    /// <summary>The largest <c>input</c> of a start, in bytes of JSON; a larger one gets <c>400 input_too_large</c>.</summary>
    [Range(2, 1024 * 1024)]
    public int MaxInputBytes { get; set; } = 256 * 1024;

    /// <summary>Browser origins allowed to open WebSockets and streams, besides the edge's own; <c>*</c> allows any.</summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>
    /// The host names this node is reached by (<c>Host</c> header, without the port): exact names,
    /// <c>*.example.com</c>, or <c>*</c>. A request naming another host gets <c>400 host_not_allowed</c>
    /// (against DNS rebinding). Empty (the default): loopback names only while the node listens on
    /// loopback only, any name when it listens on the network.
    /// </summary>
    public List<string> AllowedHosts { get; set; } = [];

    public EdgeAuthOptions Auth { get; set; } = new();
}

/// <summary>
/// Who may call the edge. With no API keys and no JWT settings the edge runs without auth (every
/// caller sees every pipeline) and says so in its start-up log.
/// </summary>
public sealed class EdgeAuthOptions
{
    /// <summary>API key to tenant. Sent as <c>X-Api-Key</c>, <c>Authorization: ApiKey &lt;key&gt;</c> or <c>access_token</c>.</summary>
    public Dictionary<string, string> ApiKeys { get; set; } = [];

    public EdgeJwtOptions Jwt { get; set; } = new();

    /// <summary>
    /// Lets the edge listen beyond loopback (for example <c>http://0.0.0.0:5080</c>) with no auth
    /// configured, where anyone who can reach it sees and controls every pipeline. Off by default:
    /// such a node refuses to start.
    /// </summary>
    public bool AllowAnonymousNetworkAccess { get; set; }

    /// <summary>The claim that names a principal's tenant.</summary>
    public string TenantClaim { get; set; } = "tenant";

    /// <summary>True when any way to authenticate is configured.</summary>
    public bool Enabled => ApiKeys.Count > 0 || Jwt.Enabled;
}

/// <summary>JWT bearer validation: an <c>Authority</c> (OpenID Connect discovery), or a symmetric <c>SigningKey</c>.</summary>
public sealed class EdgeJwtOptions
{
    public string? Authority { get; set; }

    public string? Issuer { get; set; }

    public string? Audience { get; set; }

    /// <summary>A shared secret (at least 32 bytes as UTF-8) for HMAC-SHA256-signed tokens.</summary>
    public string? SigningKey { get; set; }

    /// <summary>
    /// A token without a tenant claim is refused, unless it carries this role (a <c>role</c> or
    /// <c>roles</c> claim): then it sees and controls every tenant's pipelines. Unset (the default),
    /// no token has all-tenant access; set it only for operators' tokens.
    /// </summary>
    public string? AllTenantsRole { get; set; }

    public bool Enabled => !string.IsNullOrEmpty(Authority) || !string.IsNullOrEmpty(SigningKey);
}
