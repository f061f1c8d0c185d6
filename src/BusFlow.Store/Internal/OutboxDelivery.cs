using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Delivers what transitions committed. Under a lease (one deliverer at a time across processes),
/// each round (1) hands the next event rows, in position order, to <see cref="EventLanes"/>, which
/// publish them (in order per pipeline, pipelines in parallel) while the next round runs and mark
/// them delivered once the broker confirmed; and (2), at most once per
/// <see cref="BusFlowStoreOptions.DeliveryPollInterval"/> (at once again after a full batch), sends
/// the outbox messages (step commands and the like) that <see cref="OutboxSender"/> did not send
/// right after their commit, in order per pipeline, each with the same MessageId every time. Event
/// rows get their positions in the transaction that writes them (<see cref="GroupCommit"/>), and
/// this process's groups hand them over through <see cref="OutboxSignal"/>: a round reads the store
/// only for rows it was not handed (another process's, or a hand-over that was dropped), at every
/// poll interval, and then also positions rows written without a position. A failure leaves rows
/// for a later round, so nothing is lost while the database or the broker is away. A deliverer that
/// takes the lease, or whose round failed, first publishes what was positioned but not marked
/// delivered.
/// </summary>
internal sealed partial class OutboxDelivery(
    IDbContextFactory<BusFlowDbContext> databases,
    IBus bus,
    IBusFlowSendEndpoints addresses,
    OutboxSignal signal,
    ColocatedStepFold colocated,
    StoreWriteGate writes,
    BusFlowStoreOptions options,
    TimeProvider time,
    StoreMetrics metrics,
    ILogger<OutboxDelivery> logger) : BackgroundService
{
    public const string LeaseName = "outbox";

    /// <summary>
    /// The row of <c>busflow_leases</c> whose <see cref="StoreLease.LastPosition"/> is the position
    /// counter. A row of its own, not the outbox lease's: a commit takes the counter's lock until it
    /// ends, and the delivery's marks (<see cref="StoreLease.DeliveredUpTo"/>) and lease renewals on
    /// the same row waited for every such commit, and every commit for them.
    /// </summary>
    public const string PositionCounter = "positions";

    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(10);
    private readonly string _owner = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";
    private DateTimeOffset _leaseUntil;
    private bool _recovering = true;
    private DateTimeOffset _nextMessageScan;
    private DateTimeOffset _nextStoreLook;

    /// <summary>Every event row at or below this position was handed to the lanes (or delivered before this deliverer took over).</summary>
    private long _after;

    /// <summary>Every event row at or below this position was confirmed by the broker (the lease row's watermark).</summary>
    internal static Task<long> DeliveredUpToAsync(BusFlowDbContext db, CancellationToken cancellationToken) =>
        db.Leases.Where(l => l.Name == LeaseName).Select(l => l.DeliveredUpTo).FirstOrDefaultAsync(cancellationToken);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await using var lanes = new EventLanes(databases, writes, bus, options, time, metrics, logger, stoppingToken).Start();
        var failures = 0;
        // The store is looked at when the poll's interval passed, when something woke the delivery
        // for it, and after a round that read a full batch from it; rows handed over by this
        // process's commits need no read.
        var lookInStore = true;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var dispatched = 0;
                var sent = 0;
                if (await TryLeaseAsync(stoppingToken))
                {
                    (dispatched, lookInStore) = await DispatchEventsAsync(lanes, lookInStore || time.GetUtcNow() >= _nextStoreLook, stoppingToken);
                    sent = await SendMessagesIfDueAsync(stoppingToken);
                }
                else
                {
                    signal.DropCommitted();
                }

                if (failures > 0)
                {
                    LogResumed(logger, failures);
                    failures = 0;
                }

                if (!lookInStore && sent == 0 && !signal.HoldsCommitted)
                {
                    lookInStore = await signal.WaitAsync(options.DeliveryPollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // The database or the broker is away: keep the rows and try again with back-off. A
                // commit whose answer was lost may have positioned rows that were never handed to
                // the lanes; the next round reads everything above what was handed over from the
                // store, so the delivered-up-to mark cannot pass them.
                _recovering = true;
                lookInStore = true;
                failures++;
                LogRoundFailed(logger, ex, failures);
                await Task.Delay(Retry.Backoff(failures), time, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    private async Task<bool> TryLeaseAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (_leaseUntil - now > LeaseDuration / 2)
        {
            return true;
        }

        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var until = now + LeaseDuration;
        var taken = await db.Leases
            .Where(l => l.Name == LeaseName && (l.Owner == _owner || l.ExpiresAt < now))
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.Owner, _owner).SetProperty(l => l.ExpiresAt, until), cancellationToken);
        if (taken == 1 && _leaseUntil < now)
        {
            // Newly taken (at start, or after losing it): first publish what was positioned but not delivered.
            _recovering = true;
        }

        _leaseUntil = taken == 1 ? until : DateTimeOffset.MinValue;
        return taken == 1;
    }

    /// <summary>
    /// Hands the next event rows, continuing without a hole from the last handed over, to the
    /// lanes: those this process's commits handed over, or else, when <paramref name="lookInStore"/>,
    /// those read from the store, or else rows written without a position, positioned now. Returns
    /// how many, and whether the next round should look in the store again at once (it read a
    /// full batch from it).
    /// </summary>
    private async Task<(int Dispatched, bool LookInStore)> DispatchEventsAsync(EventLanes lanes, bool lookInStore, CancellationToken cancellationToken)
    {
        if (_recovering)
        {
            await using var db = await databases.CreateDbContextAsync(cancellationToken);
            _after = Math.Max(_after, await DeliveredUpToAsync(db, cancellationToken));
            _recovering = false;
            lookInStore = true;
        }

        var rows = signal.TakeCommitted(_after, options.DeliveryBatchSize, out var missing);
        if (rows.Count == 0 && (lookInStore || missing))
        {
            _nextStoreLook = time.GetUtcNow() + options.DeliveryPollInterval;
            rows = await ReadPositionedAsync(cancellationToken);
            if (rows.Count == 0)
            {
                rows = await PositionUnpositionedAsync(cancellationToken);
                if (rows.Count > 0 && rows[0].Position != _after + 1)
                {
                    // Rows another process committed with positions meanwhile lie in between.
                    rows = await ReadPositionedAsync(cancellationToken);
                }
            }
        }

        await lanes.DispatchAsync(rows, cancellationToken);
        if (rows.Count > 0)
        {
            _after = rows[^1].Position!.Value;
        }

        return (rows.Count, rows.Count >= options.DeliveryBatchSize);
    }

    /// <summary>
    /// The next committed event rows after the last handed over, in position order. Positions follow
    /// commit order, so every row below the last one read committed before it and is read too.
    /// </summary>
    private async Task<List<PipelineEventRecord>> ReadPositionedAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var after = _after;
        return await db.Events.AsNoTracking()
            .Where(e => e.Position > after)
            .OrderBy(e => e.Position)
            .Take(options.DeliveryBatchSize)
            .ToListAsync(cancellationToken);
    }

    /// <summary>
    /// Gives event rows written without a position (by a version before positions were given at
    /// commit) the next positions (the counter row's lock orders positioners), only while this
    /// process still holds the lease, checked in the same statement under a share lock of the lease
    /// row (a takeover's update waits for it, on PostgreSQL; SQLite has one writer anyway): a
    /// deliverer that stalled past its lease must not give positions after those of the one that
    /// took over. It first checks, without a write lock, that there is anything to position: it
    /// nearly never finds any, and on SQLite a write transaction shuts out every other writer of
    /// the file while it is open.
    /// </summary>
    private async Task<List<PipelineEventRecord>> PositionUnpositionedAsync(CancellationToken cancellationToken)
    {
        if (options.Dialect.PositionEventsSql is null)
        {
            return [];
        }

        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        if (!await db.Events.AnyAsync(e => e.Position == null, cancellationToken))
        {
            return [];
        }

        using var turn = await writes.EnterAsync(cancellationToken);
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var rows = await options.Dialect.PositionEventsAsync(
            db.Database.GetDbConnection(), transaction.GetDbTransaction(), LeaseName, _owner, time.GetUtcNow(), options.DeliveryBatchSize, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return rows;
    }

    /// <summary>
    /// Sends one batch of the outbox messages their process did not send, at most once per
    /// <see cref="BusFlowStoreOptions.DeliveryPollInterval"/> (they are older than
    /// <see cref="BusFlowStoreOptions.DirectSendGrace"/> anyway), or at once again after a full batch.
    /// </summary>
    private async Task<int> SendMessagesIfDueAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (now < _nextMessageScan)
        {
            return 0;
        }

        var sent = await SendMessagesAsync(cancellationToken);
        _nextMessageScan = sent < options.DeliveryBatchSize ? now + options.DeliveryPollInterval : now;
        return sent;
    }

    /// <summary>Sends one batch of outbox messages; returns how many it delivered.</summary>
    private async Task<int> SendMessagesAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        // Rows younger than the grace period are being sent by the process that committed them.
        var sentDirectlyAfter = time.GetUtcNow() - options.DirectSendGrace;
        var messages = await db.Outbox.AsNoTracking()
            .Where(o => o.DeliveredAt == null && o.CreatedAt < sentDirectlyAfter)
            .OrderBy(o => o.Id)
            .Take(options.DeliveryBatchSize)
            .ToListAsync(cancellationToken);
        // A step running co-located here keeps its command row until its outcome is folded.
        messages.RemoveAll(m => colocated.IsHeld(m.Id));
        if (messages.Count == 0)
        {
            return 0;
        }

        await Parallel.ForEachAsync(
            messages.GroupBy(m => m.PipelineId),
            new ParallelOptions { MaxDegreeOfParallelism = options.DeliveryParallelism, CancellationToken = cancellationToken },
            async (pipeline, ct) =>
            {
                foreach (var row in pipeline)
                {
                    await OutboxSender.SendStoredAsync(bus, addresses, row, options.BrokerConfirmTimeout, time, logger, ct);
                }
            });

        var now = time.GetUtcNow();
        var ids = messages.Select(m => m.Id).ToList();
        await db.Outbox.Where(m => ids.Contains(m.Id)).ExecuteUpdateAsync(s => s.SetProperty(m => m.DeliveredAt, now), cancellationToken);
        return messages.Count;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox delivery round failed ({Failures} in a row); the rows stay and are retried")]
    private static partial void LogRoundFailed(ILogger logger, Exception exception, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "Outbox delivery resumed after {Failures} failed rounds")]
    private static partial void LogResumed(ILogger logger, int failures);
}
