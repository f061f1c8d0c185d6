using System.Collections.Concurrent;
using System.Diagnostics;
using BusFlow.Edge.Auth;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace BusFlow.Edge.Live;

/// <summary>
/// The index of subscriptions on this edge node. The live feed hands it each event once, in
/// position order; it finds the matching subscriptions (by pipeline id, plus the wildcards) and
/// offers every one the same serialised bytes. A subscription whose connection cannot take the event
/// now switches to catch-up: it reads from the store after its cursor until it reaches what the feed
/// has offered, then rejoins the live stream, under its lock, so nothing is skipped or sent twice.
/// </summary>
internal sealed partial class SubscriptionHub(
    IPipelineEventLog reader,
    PipelineSignals signals,
    EdgeMetrics metrics,
    IOptions<EdgeOptions> options,
    TimeProvider time,
    ILogger<SubscriptionHub> logger)
{
    // Rows per store read while catching up: the first page is small, so a subscriber that missed a few
    // events gets them after a short read, and each further page is twice as large up to the most, so a
    // long replay pays the per-query cost rarely; the next page is read while this one is handed over.
    // Measured with 1,000,000 events (docs/performance.md): pages of 8,000 with a 4,096-item connection
    // buffer replayed about a sixth faster than pages of 2,000 with 1,024. A page grows only while its
    // rows' payloads fit PageBytes at the last page's average size, so a subscriber catching up holds
    // at most two pages of about that much (two pages of 8,000 at 334-byte payloads: about 6 MB).
    internal const int FirstPageSize = 1000;

    private readonly SharedPageReads _sharedReads = new();

    /// <summary>Catch-up page reads on <c>*</c>, shared between subscriptions that ask for the same page at once.</summary>
    internal SharedPageReads SharedReads => _sharedReads;
    internal const int MaxPageSize = 8000;
    internal const int MinPageSize = 100;
    private const long PageBytes = 4 * 1024 * 1024;

    private readonly ConcurrentDictionary<Guid, Subscription[]> _byPipeline = new();
    private readonly ConcurrentDictionary<EdgeConnection, byte> _connections = new();
    // Connections and waiting long-polls held per tenant (their fair share), and long-polls waiting.
    private readonly Dictionary<string, int> _tenantHolds = new(StringComparer.Ordinal);
    private int _waiting;
    private readonly Lock _gate = new();
    // Immutable: dispatch reads it without a lock; adding one of 10,000 subscribers does not copy the rest.
    private System.Collections.Immutable.ImmutableList<Subscription> _wildcards = [];
    private int _accepting = 1;

    public EdgeOptions Options { get; } = options.Value;

    public int ConnectionCount => _connections.Count;

    public bool Accepting => Volatile.Read(ref _accepting) == 1;

    /// <summary>Registers a connection; null when it may open, otherwise why not.</summary>
    public Refusal? TryOpen(EdgeConnection connection)
    {
        if (Refuse(connection.Principal) is { } refused)
        {
            return refused;
        }

        _connections.TryAdd(connection, 0);
        metrics.ConnectionOpened();
        return null;
    }

    public void Closed(EdgeConnection connection)
    {
        if (_connections.TryRemove(connection, out _))
        {
            Release(connection.Principal);
            metrics.ConnectionClosed();
        }
    }

    /// <summary>
    /// A long-poll about to wait: it counts against the node's connections and its tenant's share
    /// while it waits. Dispose the hold when it stops waiting; null with the refusal when it may not.
    /// </summary>
    public (IDisposable? Wait, Refusal? Refused) TryWait(BusFlowPrincipal principal)
    {
        if (Refuse(principal) is { } refused)
        {
            return (null, refused);
        }

        Interlocked.Increment(ref _waiting);
        return (new WaitHold(this, principal), null);
    }

    /// <summary>Takes a place in the node and in the principal's tenant share, or says why not.</summary>
    private Refusal? Refuse(BusFlowPrincipal principal)
    {
        Refusal? refused = null;
        if (!Accepting || _connections.Count + Volatile.Read(ref _waiting) >= Options.MaxConnections)
        {
            refused = new("too many connections; try again later", "This edge node is full or shutting down; try again later or another node.");
        }
        else if (!TryHold(principal))
        {
            refused = new(
                "this tenant's share of connections is taken; try again later",
                $"Tenant '{principal.Tenant}' holds its share of {Options.MaxConnectionsPerTenant} connections and waiting long-polls on this node (BusFlow:Edge:MaxConnectionsPerTenant); try again later.");
        }

        if (refused is not null)
        {
            metrics.ConnectionRefused();
        }

        return refused;
    }

    private bool TryHold(BusFlowPrincipal principal)
    {
        if (principal.Tenant is not { } tenant || Options.MaxConnectionsPerTenant <= 0)
        {
            return true;
        }

        lock (_tenantHolds)
        {
            var held = _tenantHolds.GetValueOrDefault(tenant);
            if (held >= Options.MaxConnectionsPerTenant)
            {
                return false;
            }

            _tenantHolds[tenant] = held + 1;
            return true;
        }
    }

    private void Release(BusFlowPrincipal principal)
    {
        if (principal.Tenant is not { } tenant || Options.MaxConnectionsPerTenant <= 0)
        {
            return;
        }

        lock (_tenantHolds)
        {
            if (_tenantHolds.TryGetValue(tenant, out var held))
            {
                if (held <= 1)
                {
                    _tenantHolds.Remove(tenant);
                }
                else
                {
                    _tenantHolds[tenant] = held - 1;
                }
            }
        }
    }

    private sealed class WaitHold(SubscriptionHub hub, BusFlowPrincipal principal) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                Interlocked.Decrement(ref hub._waiting);
                hub.Release(principal);
            }
        }
    }

    /// <summary>Adds a subscription; with a cursor it starts by catching up from the store.</summary>
    public void Add(Subscription subscription)
    {
        // Catching up before the feed can see it: the feed must never start a second catch-up.
        var catchUp = subscription.Cursor is not null;
        subscription.CatchingUp = catchUp;
        lock (_gate)
        {
            if (subscription.PipelineId is { } id)
            {
                _byPipeline.AddOrUpdate(id, _ => [subscription], (_, existing) => [.. existing, subscription]);
            }
            else
            {
                _wildcards = _wildcards.Add(subscription);
            }
        }

        metrics.SubscriptionAdded();
        if (catchUp)
        {
            StartCatchUp(subscription);
        }
    }

    public void Remove(Subscription subscription)
    {
        subscription.Cancel();
        lock (_gate)
        {
            if (subscription.PipelineId is { } id)
            {
                if (_byPipeline.TryGetValue(id, out var existing))
                {
                    var rest = existing.Where(s => s != subscription).ToArray();
                    if (rest.Length == 0)
                    {
                        _byPipeline.TryRemove(id, out _);
                    }
                    else
                    {
                        _byPipeline[id] = rest;
                    }
                }
            }
            else
            {
                _wildcards = _wildcards.Remove(subscription);
            }
        }

        metrics.SubscriptionRemoved();
    }

    /// <summary>Called by the live feed for each event, in position order, from one thread.</summary>
    public void Dispatch(EdgeEvent e)
    {
        var delivered = 0;
        if (_byPipeline.TryGetValue(e.Event.PipelineId, out var subscribers))
        {
            foreach (var subscription in subscribers)
            {
                delivered += Offer(subscription, e) ? 1 : 0;
            }
        }

        foreach (var subscription in Volatile.Read(ref _wildcards))
        {
            delivered += Offer(subscription, e) ? 1 : 0;
        }

        // One sample per event: from its arrival to its hand-off to the last live subscriber; and,
        // when the pipeline is traced, one span in its trace.
        if (delivered > 0)
        {
            metrics.Broadcast(e.ReceivedAt);
            if (e.Event.TraceParent is not null)
            {
                PipelineActivities.EventHandled(PipelineActivities.Push, e.Event, time.GetUtcNow() - Stopwatch.GetElapsedTime(e.ReceivedAt), delivered);
            }
        }

        signals.Signal(e.Event.PipelineId);
    }

    /// <summary>Offers the event to one subscription; true when it went into the connection's buffer.</summary>
    private bool Offer(Subscription subscription, EdgeEvent e)
    {
        var order = subscription.Order(e.Event);
        lock (subscription)
        {
            if (subscription.Cancelled)
            {
                return false;
            }

            if (subscription.CatchingUp)
            {
                // Only events the subscription gets: a catch-up on * reads the matching rows alone,
                // so its cursor never passes the positions of the others.
                if (subscription.PipelineId is not null || subscription.Matches(e.Event))
                {
                    subscription.SkippedUpTo = Math.Max(subscription.SkippedUpTo, order);
                }

                return false;
            }

            if (subscription.Cursor is { } cursor && order <= cursor)
            {
                return false;
            }

            // A pipeline's events come in seq order; a hole means one is only in the store.
            if (subscription.PipelineId is not null && subscription.Cursor is { } last && order > last + 1)
            {
                FallBehind(subscription, order);
                return false;
            }

            if (!subscription.Matches(e.Event))
            {
                subscription.Cursor = order;
                return false;
            }

            if (subscription.Connection.TryEnqueue(e, subscription.Batch))
            {
                subscription.Cursor = order;
                return true;
            }

            subscription.Cursor ??= order - 1;
            FallBehind(subscription, order);
            return false;
        }
    }

    private void FallBehind(Subscription subscription, long skipped)
    {
        subscription.CatchingUp = true;
        subscription.SkippedUpTo = skipped;
        StartCatchUp(subscription);
    }

    private void StartCatchUp(Subscription subscription) => _ = Task.Run(() => CatchUpAsync(subscription));

    private async Task CatchUpAsync(Subscription subscription)
    {
        metrics.CatchUpStarted();
        var token = subscription.Token;
        try
        {
            // The next page is read while this one is handed to the connection, so the writer does not
            // wait for the store between pages (at most two pages in memory per catching-up subscription).
            Task<StoredEventPage>? next = null;
            var frames = new ReplayFrames();
            // The size of the page being read (next), or to read.
            var size = FirstPageSize;
            while (!token.IsCancellationRequested)
            {
                long cursor;
                lock (subscription)
                {
                    cursor = subscription.Cursor ?? 0;
                }

                var page = await (next ?? ReadStoredAsync(subscription, cursor, size, token));
                var full = page.RowsRead == size;
                size = full ? NextPageSize(size, page) : FirstPageSize;
                next = full ? ReadStoredAsync(subscription, page.Last, size, token) : null;
                // The cursor moves once per page (below): while catching up only this loop reads it.
                // The events go to the connection in runs, each run one buffer item (a batched
                // subscription's run is one frame, another's one frame per event); a page's last run
                // is handed over before the page ends, so that the switch to live below finds every
                // replayed event already in the buffer.
                EventRun? run = null;
                foreach (var stored in page.Events)
                {
                    if (Replayed(subscription, stored, frames) is not { } e)
                    {
                        continue;
                    }

                    run ??= new EventRun { Batch = subscription.Batch };
                    run.Add(e.Event, e.ReleaseBefore);
                    if (run.Full)
                    {
                        await subscription.Connection.EnqueueReplayAsync(run, token);
                        run = null;
                    }
                }

                if (run is not null)
                {
                    await subscription.Connection.EnqueueReplayAsync(run, token);
                }

                // Every payload was copied into a frame or read into an event above.
                page.Release();

                lock (subscription)
                {
                    subscription.Cursor = Math.Max(subscription.Cursor ?? 0, page.Last);
                    if (!full && subscription.SkippedUpTo <= subscription.Cursor)
                    {
                        subscription.CatchingUp = false;
                        return;
                    }
                }

                if (page.RowsRead == 0)
                {
                    // The feed offered an event the store does not show yet (a replica behind); look again shortly.
                    await Task.Delay(50, token);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            LogCatchUpFailed(logger, ex, subscription.Key);
            subscription.Connection.RequestClose(CloseCodes.InternalError, "replay failed; resume later", drain: true);
        }
        finally
        {
            metrics.CatchUpEnded();
        }
    }

    /// <summary>Twice the last full page, at most <see cref="MaxPageSize"/> rows and, at its rows' average size, <see cref="PageBytes"/>.</summary>
    internal static int NextPageSize(int size, StoredEventPage page)
    {
        var average = Math.Max(1, page.PayloadBytes / Math.Max(1, page.RowsRead));
        return (int)Math.Clamp(Math.Min(size * 2L, PageBytes / average), MinPageSize, MaxPageSize);
    }

    private Task<StoredEventPage> ReadStoredAsync(Subscription subscription, long after, int pageSize, CancellationToken token) =>
        subscription.PipelineId is { } id
            // One pipeline's rows are few: read whole, so that the seq cursor passes every one of them.
            // Started on the thread pool: Microsoft.Data.Sqlite reads the whole page synchronously
            // inside its async methods, so called here the read-ahead would finish before the page
            // before it is handed over (the shared reads below yield for the same reason).
            ? Task.Run(() => Counted(reader.ReadPipelineStoredAsync(id, after, pageSize, token)), token)
            // On *, the tenant, types and tags are filtered in SQL: the rows that do not pass never
            // leave the database (a tenant's on an index on tenant and position); subscriptions
            // asking for the same page at once share one read.
            : _sharedReads.ReadAsync(subscription.StoreFilterKey, after, pageSize, stop => Counted(reader.ReadAllStoredAsync(after, pageSize, subscription.StoreFilter, stop)), token);

    /// <summary>The page, its rows counted as read from the store.</summary>
    private async Task<StoredEventPage> Counted(Task<StoredEventPage> read)
    {
        var page = await read;
        metrics.ReplayRowsRead(page.RowsRead);
        return page;
    }

    /// <summary>
    /// What a catching-up subscription gets for a stored event: its stored bytes with the position
    /// spliced in when the columns decide the match (no tag filter); otherwise the event is
    /// read and matched as a live one is. Null when it does not match or this version cannot read it.
    /// </summary>
    private (WireEvent Event, byte[]? ReleaseBefore)? Replayed(Subscription subscription, StoredEvent stored, ReplayFrames frames)
    {
        var matches = subscription.MatchesColumns(stored);
        if (matches == false)
        {
            return null;
        }

        if (matches == true && StoredEventJson.TryFindPosition(stored, out var start, out var end))
        {
            var (frame, releaseBefore) = frames.Splice(stored.Payload.Span, start, end, stored.Position);
            return (new WireEvent(stored.Seq, stored.Position, stored.Type, frame), releaseBefore);
        }

        if (stored.Read() is not { } e)
        {
            LogUnreadable(logger, stored.Position, stored.Type, stored.PipelineId);
            return null;
        }

        return subscription.Matches(e) ? (new WireEvent(e.Seq, e.Position, e.EventType, PipelineEventJson.SerializeToUtf8Bytes(e)), null) : null;
    }

    /// <summary>Closes connections that stopped reading, with 4000: resume from the last seq or position seen.</summary>
    public void CloseStalled()
    {
        foreach (var connection in _connections.Keys)
        {
            if (!connection.CloseRequested && connection.IsStalled(Options.StallTimeout))
            {
                metrics.ConnectionStalled();
                connection.RequestClose(CloseCodes.Resume, "stalled: reconnect and resume with after", drain: false);
            }
        }
    }

    /// <summary>Stops accepting and tells every connection to reconnect elsewhere after draining what it has.</summary>
    public async Task ShutdownAsync(CancellationToken cancellationToken)
    {
        Interlocked.Exchange(ref _accepting, 0);
        foreach (var connection in _connections.Keys)
        {
            connection.RequestClose(CloseCodes.GoingAway, "server shutting down; reconnect and resume", drain: true);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Options.DrainTimeout);
        while (!_connections.IsEmpty && !timeout.IsCancellationRequested)
        {
            await Task.Delay(20, CancellationToken.None);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Replay for subscription {Key} failed; the connection is closed so the client resumes")]
    private static partial void LogCatchUpFailed(ILogger logger, Exception exception, string key);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event at position {Position} ({Type}) of pipeline {PipelineId} cannot be read by this version; skipped on replay")]
    private static partial void LogUnreadable(ILogger logger, long position, string type, Guid pipelineId);
}

/// <summary>Why a connection or a waiting long-poll was refused: a WebSocket close reason (at most 123 bytes) and a problem's detail.</summary>
internal sealed record Refusal(string CloseReason, string Detail);
