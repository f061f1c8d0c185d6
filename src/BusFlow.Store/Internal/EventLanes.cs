using System.Threading.Channels;
using BusFlow.Contracts;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Publishes positioned event rows while the delivery positions the next ones. Each row goes to one
/// of <see cref="BusFlowStoreOptions.DeliveryParallelism"/> lanes chosen by its pipeline id, and each
/// lane publishes its rows one message at a time, in order: a pipeline's events reach the bus in seq
/// order, different pipelines' in parallel. A lane retries a failed publish (broker away) until it is
/// confirmed. A handed-over batch is marked delivered, by moving the lease's delivered-up-to position
/// to its last row (the rows are not rewritten), once every row of it
/// and of the batches before it was confirmed, at most once per <see cref="MarkInterval"/>; what was published but not marked when the process
/// dies is published again by the next deliverer (at least once, same MessageId for an event).
/// </summary>
internal sealed partial class EventLanes : IAsyncDisposable
{
    /// <summary>The shortest time between two delivered marks.</summary>
    internal static readonly TimeSpan MarkInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>The most delivery rounds waiting to be marked.</summary>
    private const int MarkRounds = 64;

    private readonly StoreWriteGate _writes;
    private readonly IDbContextFactory<BusFlowDbContext> _databases;
    private readonly IBus _bus;
    private readonly BusFlowStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly StoreMetrics _metrics;
    private readonly CancellationTokenSource _stopping;
    private readonly Channel<(PipelineEventRecord Row, Batch Batch)>[] _lanes;
    private readonly Channel<Batch> _marks;
    private Task[] _publishers = [];
    private Task _marker = Task.CompletedTask;

    public EventLanes(IDbContextFactory<BusFlowDbContext> databases, StoreWriteGate writes, IBus bus, BusFlowStoreOptions options, TimeProvider time, StoreMetrics metrics, ILogger logger, CancellationToken stoppingToken)
    {
        _metrics = metrics;
        _databases = databases;
        _writes = writes;
        _bus = bus;
        _options = options;
        _time = time;
        _logger = logger;
        _stopping = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        // A lane holds up to one round's rows; at most MarkRounds rounds wait to be marked (a mark
        // goes at most once per MarkInterval): the delivery cannot run further ahead of the broker.
        _lanes = [.. Enumerable.Range(0, options.DeliveryParallelism).Select(_ => Channel.CreateBounded<(PipelineEventRecord, Batch)>(
            new BoundedChannelOptions(options.DeliveryBatchSize) { SingleReader = true, SingleWriter = true }))];
        _marks = Channel.CreateBounded<Batch>(new BoundedChannelOptions(MarkRounds) { SingleReader = true, SingleWriter = true });
    }

    /// <summary>Starts the lanes' publishers and the marker; they run until <see cref="DisposeAsync"/>.</summary>
    public EventLanes Start()
    {
        // One reader per channel: the lanes and the marks are single-reader channels.
        if (_publishers.Length > 0)
        {
            throw new InvalidOperationException("The event lanes are started already.");
        }

        _publishers = [.. _lanes.Select(lane => Task.Run(() => PublishAsync(lane.Reader), CancellationToken.None))];
        _marker = Task.Run(MarkAsync, CancellationToken.None);
        return this;
    }

    /// <summary>Hands rows (in position order) to their lanes; waits while the lanes are full.</summary>
    public async ValueTask DispatchAsync(IReadOnlyList<PipelineEventRecord> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }

        var batch = new Batch(rows.Count, rows[^1].Position!.Value);
        await _marks.Writer.WriteAsync(batch, cancellationToken);
        foreach (var row in rows)
        {
            await _lanes[Lane(row.PipelineId)].Writer.WriteAsync((row, batch), cancellationToken);
        }
    }

    /// <summary>
    /// The lane of a pipeline. Hashes all 16 bytes: NewId's sequential ids differ in few bits, and
    /// Guid.GetHashCode() modulo a small number puts most of them into a few lanes.
    /// </summary>
    private int Lane(Guid pipelineId)
    {
        Span<byte> bytes = stackalloc byte[16];
        pipelineId.TryWriteBytes(bytes);
        var hash = new HashCode();
        hash.AddBytes(bytes);
        return (int)((uint)hash.ToHashCode() % (uint)_lanes.Length);
    }

    private async Task PublishAsync(ChannelReader<(PipelineEventRecord Row, Batch Batch)> lane)
    {
        var taken = new List<(PipelineEventRecord Row, Batch Batch)>();
        var events = new List<PipelineEvent>();
        try
        {
            while (await lane.WaitToReadAsync(_stopping.Token))
            {
                var most = _options.EventPublishing == EventPublishMode.Batched ? _options.MaxEventsPerBatch : 1;
                while (taken.Count < most && lane.TryRead(out var item))
                {
                    taken.Add(item);
                    if (PipelineStateMap.Positioned(item.Row) is { } e)
                    {
                        events.Add(e);
                    }
                    else
                    {
                        LogUnreadableEvent(_logger, item.Row.Id, item.Row.Type, item.Row.PipelineId);
                    }
                }

                if (events.Count > 0)
                {
                    await UntilConfirmedAsync(events, taken[0].Row);
                }

                foreach (var (_, batch) in taken)
                {
                    batch.Confirmed();
                }

                taken.Clear();
                events.Clear();
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task UntilConfirmedAsync(List<PipelineEvent> events, PipelineEventRecord first)
    {
        var failures = await Retry.UntilDoneAsync(
            async stopping =>
            {
                var started = _time.GetUtcNow();
                Task publishing;
                if (_options.EventPublishing == EventPublishMode.Batched)
                {
                    // A new MessageId each time: after a restart a batch may hold other events, so
                    // subscribers de-duplicate by (pipelineId, seq), not by message.
                    publishing = _bus.Publish(new PipelineEventBatch { Events = [.. events] }, stopping);
                }
                else
                {
                    var e = events[0];
                    var messageId = PipelineEventMessageIds.For(first.PipelineId, first.Seq);
                    publishing = _bus.Publish(e, e.GetType(), Pipe.Execute<PublishContext>(c => c.MessageId = messageId), stopping);
                }

                // A publish the client never completes (broker restarted under it) counts as failed.
                await publishing.WaitAsync(_options.BrokerConfirmTimeout, _time, stopping);
                _metrics.Published(events);
                foreach (var e in events)
                {
                    PipelineActivities.EventHandled(PipelineActivities.Deliver, e, started);
                }
            },
            Retry.Always,
            (ex, failed) => LogPublishFailed(_logger, ex, failed),
            _time,
            _stopping.Token);
        if (failures > 0)
        {
            LogPublishResumed(_logger, failures);
        }
    }

    private async Task MarkAsync()
    {
        var lastMark = 0L;
        try
        {
            while (await _marks.Reader.WaitToReadAsync(_stopping.Token))
            {
                // Batches finish in order of hand-over at the earliest; mark every finished one at once.
                var first = await _marks.Reader.ReadAsync(_stopping.Token);
                await first.AllConfirmed.WaitAsync(_stopping.Token);
                var to = TakeConfirmed(first.To);

                // At most one mark per MarkInterval: under load a mark per delivery round was a write
                // transaction per group commit (on SQLite, a turn of the one write lock that the next
                // group waited for). A lone mark after a quiet spell goes at once. What was confirmed
                // but not yet marked when the process dies is published again, as before.
                if (lastMark != 0 && _time.GetElapsedTime(lastMark) is var since && since < MarkInterval)
                {
                    await Task.Delay(MarkInterval - since, _time, _stopping.Token);
                    to = TakeConfirmed(to);
                }

                await MarkDeliveredAsync(to);
                lastMark = _time.GetTimestamp();
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>The position up to which the batches waiting to be marked are confirmed, taking them.</summary>
    private long TakeConfirmed(long to)
    {
        while (_marks.Reader.TryPeek(out var next) && next.AllConfirmed.IsCompleted && _marks.Reader.TryRead(out next))
        {
            to = next.To;
        }

        return to;
    }

    // Batches are handed over with contiguous positions and marked in order, so "every row up to
    // here was confirmed" is one number; the event rows are not rewritten.
    private Task<int> MarkDeliveredAsync(long to) => Retry.UntilDoneAsync(
        async stopping =>
        {
            await using var db = await _databases.CreateDbContextAsync(stopping);
            using var turn = await _writes.EnterAsync(stopping);
            await db.Leases
                .Where(l => l.Name == OutboxDelivery.LeaseName && l.DeliveredUpTo < to)
                .ExecuteUpdateAsync(s => s.SetProperty(l => l.DeliveredUpTo, to), stopping);
        },
        Retry.Always,
        (ex, failures) => LogMarkFailed(_logger, ex, failures),
        _time,
        _stopping.Token);

    public async ValueTask DisposeAsync()
    {
        foreach (var lane in _lanes)
        {
            lane.Writer.TryComplete();
        }

        _marks.Writer.TryComplete();
        await _stopping.CancelAsync();
        await Task.WhenAll([.. _publishers, _marker]).ContinueWith(_ => { }, TaskScheduler.Default);
        _stopping.Dispose();
    }

    private sealed class Batch(int rows, long to)
    {
        private readonly TaskCompletionSource _all = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _pending = rows;

        public long To { get; } = to;

        public Task AllConfirmed => _all.Task;

        public void Confirmed()
        {
            if (Interlocked.Decrement(ref _pending) == 0)
            {
                _all.TrySetResult();
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event row {RowId} ({Type}) of pipeline {PipelineId} cannot be read by this version; skipped")]
    private static partial void LogUnreadableEvent(ILogger logger, long rowId, string type, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Publishing events failed ({Failures} in a row); retrying until the broker confirms")]
    private static partial void LogPublishFailed(ILogger logger, Exception exception, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "Publishing events resumed after {Failures} failures")]
    private static partial void LogPublishResumed(ILogger logger, int failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Marking events delivered failed ({Failures} in a row); retrying")]
    private static partial void LogMarkFailed(ILogger logger, Exception exception, int failures);
}
