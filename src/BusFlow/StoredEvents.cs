using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// What a filtered read of the log passes (each given part must hold): the events of one tenant,
/// of these types, carrying these tags with these values.
/// </summary>
public sealed record StoredEventFilter(string? Tenant = null, IReadOnlyCollection<string>? Types = null, IReadOnlyDictionary<string, string>? Tags = null)
{
    public bool IsEmpty => Tenant is null && Types is not { Count: > 0 } && Tags is not { Count: > 0 };
}

/// <summary>A page of replayed events and how far the read went (a seq or a position, unreadable rows included).</summary>
public sealed record ReplayPage(IReadOnlyList<PipelineEvent> Events, long Last, int RowsRead);

/// <summary>
/// An event as the log stores it: the columns it is routed by and its JSON as recorded, in UTF-8
/// (position 0 inside; the row's <see cref="Position"/> is the real one).
/// </summary>
public sealed record StoredEvent(Guid PipelineId, long Seq, long Position, string Type, ReadOnlyMemory<byte> Payload, string? Tenant = null)
{
    /// <summary>The event, deserialised, with its position; null when this version cannot read it.</summary>
    public PipelineEvent? Read() => PipelineEventJson.TryDeserialize(Payload.Span) is { } e ? e with { Position = Position } : null;
}

/// <summary>
/// A page of stored events and how far the read went (a seq or a position). A store may lend the
/// events' payloads from buffers rented for the page (BusFlow.Store does on PostgreSQL: one
/// allocation per 256 KiB of rows, not one per row); <see cref="Release"/> gives them back once the
/// payloads are no longer needed, through the <c>release</c> the store passed. A page that is never
/// released leaves them to the garbage collector.
/// </summary>
public sealed class StoredEventPage(IReadOnlyList<StoredEvent> events, long last, Action? release = null)
{
    private Action? _release = release;
    private int _holders = 1;

    /// <summary>The rows read, in order.</summary>
    public IReadOnlyList<StoredEvent> Events { get; } = events;

    /// <summary>How far the read went: the last seq or position read, or where it started when none.</summary>
    public long Last { get; } = last;

    /// <summary>The payload bytes of the page's rows.</summary>
    public long PayloadBytes => Events.Sum(e => (long)e.Payload.Length);

    /// <summary>Rows read: every row of a stored page is in it (unlike <see cref="ReplayPage"/>, nothing is skipped here).</summary>
    public int RowsRead => Events.Count;

    /// <summary>
    /// Hands the page to <paramref name="readers"/> readers (before any of them has it), each of which
    /// calls <see cref="Release"/> once: the buffers go back to the pool after the last.
    /// </summary>
    public void HoldFor(int readers) => Volatile.Write(ref _holders, readers);

    /// <summary>
    /// Gives up this reader's hold; the last one returns the page's payload buffers to the pool: after
    /// this the events' <see cref="StoredEvent.Payload"/> must not be read (the memory may hold other
    /// data). Calls past the last hold do nothing.
    /// </summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _holders) <= 0)
        {
            Interlocked.Exchange(ref _release, null)?.Invoke();
        }
    }
}
