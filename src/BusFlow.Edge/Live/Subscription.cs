using BusFlow.Contracts;

namespace BusFlow.Edge.Live;

/// <summary>
/// One subscription of a connection: a pipeline (ordered by seq) or every visible pipeline (ordered
/// by position), with its filter and cursor. It is live (fed from the bus) or catching up (fed from
/// the store); the hub switches it between the two under its lock so no event is missed or doubled.
/// </summary>
internal sealed class Subscription(string key, Guid? pipelineId, PipelineEventFilter filter, EdgeConnection connection, long? after)
{
    /// <summary>What the client subscribed to: a pipeline id, or <c>*</c>.</summary>
    public string Key { get; } = key;

    /// <summary>The pipeline, or null for every pipeline the principal may see.</summary>
    public Guid? PipelineId { get; } = pipelineId;

    public PipelineEventFilter Filter { get; } = filter;

    public EdgeConnection Connection { get; } = connection;

    private CancellationTokenSource? _cancellation;
    private int _removed;
    private StoredEventFilter? _storeFilter;
    private string? _storeFilterKey;

    /// <summary>
    /// Cancelled when the subscription is removed or its connection closes: made for the first
    /// catch-up, so a live-only subscription (most idle ones) carries no linked token source.
    /// </summary>
    public CancellationToken Token
    {
        get
        {
            // Made with a full fence (CompareExchange) before _removed is read; Cancel writes _removed
            // with one before it reads _cancellation: one of the two always sees the other.
            var source = LazyInitializer.EnsureInitialized(ref _cancellation, () => CancellationTokenSource.CreateLinkedTokenSource(Connection.Closing.Token));
            if (Volatile.Read(ref _removed) != 0)
            {
                source.Cancel();
            }

            return source.Token;
        }
    }

    /// <summary>Removes the subscription: its catch-up, if any, stops.</summary>
    public void Cancel()
    {
        Interlocked.Exchange(ref _removed, 1);
        Volatile.Read(ref _cancellation)?.Cancel();
    }

    /// <summary>Whether the subscriber takes several events in one write (a WebSocket <c>events</c> frame, SSE events flushed together).</summary>
    public bool Batch { get; init; }

    /// <summary>The last seq (pipeline) or position (<c>*</c>) passed on or filtered out; null for live-only before the first event.</summary>
    public long? Cursor { get; set; } = after;

    /// <summary>Served from the store; live events are skipped (and remembered in <see cref="SkippedUpTo"/>).</summary>
    public bool CatchingUp { get; set; }

    /// <summary>The highest seq or position the live feed offered while this subscription was catching up.</summary>
    public long SkippedUpTo { get; set; }

    public bool Cancelled => Volatile.Read(ref _removed) != 0 || Connection.Closing.IsCancellationRequested;

    /// <summary>The event's place in this subscription's order.</summary>
    public long Order(PipelineEvent e) => PipelineId is null ? e.Position : e.Seq;

    /// <summary>Whether the subscriber gets the event: visible to its principal and passing its filter.</summary>
    public bool Matches(PipelineEvent e) => Connection.Principal.Sees(e) && Filter.Matches(e);

    /// <summary>What a catch-up on <c>*</c> asks the store to filter in SQL: the principal's tenant, the types and the tags.</summary>
    public StoredEventFilter StoreFilter => _storeFilter ??= new(Connection.Principal.Tenant, Filter.EventTypes, Filter.Tags);

    /// <summary>
    /// The same text for subscriptions whose <see cref="StoreFilter"/> reads the same rows (they may
    /// share page reads); made for the first catch-up on <c>*</c>, not for every subscription.
    /// </summary>
    public string StoreFilterKey => _storeFilterKey ??= System.Text.Json.JsonSerializer.Serialize(new object?[]
    {
        Connection.Principal.Tenant,
        Filter.EventTypes?.Order(StringComparer.Ordinal).ToArray(),
        Filter.Tags?.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new[] { t.Key, t.Value }).ToArray(),
    });

    /// <summary>
    /// Whether a stored event passes, from its columns alone (its tenant is a column; on <c>*</c> the
    /// store already matched the tags); null when its tags must be read first (a pipeline's
    /// subscription that names tags).
    /// </summary>
    public bool? MatchesColumns(StoredEvent e) =>
        Filter.Tags is { Count: > 0 } && PipelineId is not null
            ? null
            : (Connection.Principal.Tenant is not { } tenant || string.Equals(tenant, e.Tenant, StringComparison.Ordinal))
                && (Filter.PipelineId is not { } id || id == e.PipelineId)
                && (Filter.EventTypes is not { Count: > 0 } types || types.Contains(e.Type));
}
