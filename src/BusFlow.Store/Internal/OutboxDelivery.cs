using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Delivers what transitions committed. Under a lease (one deliverer at a time across processes) it
/// (1) gives new event rows their store-wide positions, in the order their commits became visible,
/// and (2) publishes positioned events and sends outbox messages in batches: in order per pipeline,
/// pipelines in parallel, each with the same MessageId every time. A row is marked delivered only
/// after the broker confirmed it; a failure leaves it for the next round, so nothing is lost while
/// the database or the broker is away.
/// </summary>
internal sealed partial class OutboxDelivery(
    IDbContextFactory<BusFlowDbContext> databases,
    IBus bus,
    OutboxSignal signal,
    BusFlowStoreOptions options,
    TimeProvider time,
    ILogger<OutboxDelivery> logger) : BackgroundService
{
    public const string LeaseName = "outbox";

    private static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(10);
    private readonly string _owner = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";
    private DateTimeOffset _leaseUntil;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var worked = await TryLeaseAsync(stoppingToken) && (await AssignPositionsAsync(stoppingToken) + await DeliverAsync(stoppingToken)) > 0;
                if (failures > 0)
                {
                    LogResumed(logger, failures);
                    failures = 0;
                }

                if (!worked)
                {
                    await signal.WaitAsync(options.DeliveryPollInterval, stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                // The database or the broker is away: keep the rows and try again with back-off.
                failures++;
                LogRoundFailed(logger, ex, failures);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures, 6)))), time, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
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
        _leaseUntil = taken == 1 ? until : DateTimeOffset.MinValue;
        return taken == 1;
    }

    /// <summary>Gives committed, unpositioned event rows the next positions; the lease row's counter guards against a second positioner.</summary>
    internal async Task<int> AssignPositionsAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        // Look before taking the write lock: this runs every poll, mostly finding nothing, and on
        // SQLite a write transaction shuts out every other writer of the file while it is open.
        if (!await db.Events.AnyAsync(e => e.Position == null, cancellationToken))
        {
            return 0;
        }

        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        var fresh = await db.Events.Where(e => e.Position == null).OrderBy(e => e.Id).Take(options.DeliveryBatchSize).ToListAsync(cancellationToken);
        if (fresh.Count == 0)
        {
            return 0;
        }

        var lease = await db.Leases.SingleAsync(l => l.Name == LeaseName, cancellationToken);
        var last = lease.LastPosition;
        foreach (var row in fresh)
        {
            row.Position = ++last;
        }

        var moved = await db.Leases
            .Where(l => l.Name == LeaseName && l.LastPosition == lease.LastPosition)
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.LastPosition, last), cancellationToken);
        if (moved != 1)
        {
            return 0;
        }

        db.Entry(lease).State = EntityState.Unchanged;
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return fresh.Count;
    }

    /// <summary>Publishes one batch; returns how many rows it delivered.</summary>
    internal async Task<int> DeliverAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var events = await db.Events.AsNoTracking()
            .Where(e => e.Position != null && e.DeliveredAt == null)
            .OrderBy(e => e.Position)
            .Take(options.DeliveryBatchSize)
            .ToListAsync(cancellationToken);
        var messages = await db.Outbox.AsNoTracking()
            .Where(o => o.DeliveredAt == null)
            .OrderBy(o => o.Id)
            .Take(options.DeliveryBatchSize)
            .ToListAsync(cancellationToken);
        if (events.Count == 0 && messages.Count == 0)
        {
            return 0;
        }

        var pipelines = events.Select(e => e.PipelineId).Concat(messages.Select(m => m.PipelineId)).Distinct().ToList();
        var eventsByPipeline = events.ToLookup(e => e.PipelineId);
        var messagesByPipeline = messages.ToLookup(m => m.PipelineId);
        await Parallel.ForEachAsync(
            pipelines,
            new ParallelOptions { MaxDegreeOfParallelism = options.DeliveryParallelism, CancellationToken = cancellationToken },
            async (pipelineId, ct) =>
            {
                foreach (var row in eventsByPipeline[pipelineId])
                {
                    await PublishEventAsync(row, ct);
                }

                foreach (var row in messagesByPipeline[pipelineId])
                {
                    await SendMessageAsync(row, ct);
                }
            });

        var now = time.GetUtcNow();
        var eventIds = events.Select(e => e.Id).ToList();
        var messageIds = messages.Select(m => m.Id).ToList();
        // One write transaction for both marks: on SQLite each write waits its turn for the file's lock.
        await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
        if (eventIds.Count > 0)
        {
            await db.Events.Where(e => eventIds.Contains(e.Id)).ExecuteUpdateAsync(s => s.SetProperty(e => e.DeliveredAt, now), cancellationToken);
        }

        if (messageIds.Count > 0)
        {
            await db.Outbox.Where(m => messageIds.Contains(m.Id)).ExecuteUpdateAsync(s => s.SetProperty(m => m.DeliveredAt, now), cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);

        return events.Count + messages.Count;
    }

    private async Task PublishEventAsync(PipelineEventRecord row, CancellationToken cancellationToken)
    {
        if (PipelineStateMap.Read(row) is not { } e)
        {
            LogUnreadableEvent(logger, row.Id, row.Type, row.PipelineId);
            return;
        }

        var messageId = EventMessageId(row);
        await bus.Publish(e, e.GetType(), Pipe.Execute<PublishContext>(c => c.MessageId = messageId), cancellationToken);
    }

    private async Task SendMessageAsync(OutboxMessageRecord row, CancellationToken cancellationToken)
    {
        if (OutboxRows.Read(row) is not var (message, type))
        {
            LogUnreadableMessage(logger, row.Id, row.MessageType);
            return;
        }

        if (row.Destination is { } destination)
        {
            var endpoint = await bus.GetSendEndpoint(new Uri(destination));
            await endpoint.Send(message, type, Pipe.Execute<SendContext>(c => c.MessageId = row.MessageId), cancellationToken);
        }
        else
        {
            await bus.Publish(message, type, Pipe.Execute<PublishContext>(c => c.MessageId = row.MessageId), cancellationToken);
        }
    }

    /// <summary>The same event always travels with the same MessageId, derived from its pipeline and seq.</summary>
    internal static Guid EventMessageId(PipelineEventRecord row)
    {
        Span<byte> bytes = stackalloc byte[16];
        row.PipelineId.TryWriteBytes(bytes);
        var seq = BitConverter.GetBytes(row.Seq);
        for (var i = 0; i < 8; i++)
        {
            bytes[8 + i] ^= seq[i];
        }

        return new Guid(bytes);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox delivery round failed ({Failures} in a row); the rows stay and are retried")]
    private static partial void LogRoundFailed(ILogger logger, Exception exception, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "Outbox delivery resumed after {Failures} failed rounds")]
    private static partial void LogResumed(ILogger logger, int failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event row {RowId} ({Type}) of pipeline {PipelineId} cannot be read by this version; skipped")]
    private static partial void LogUnreadableEvent(ILogger logger, long rowId, string type, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox row {RowId} has a message type this version does not know ({MessageType}); skipped")]
    private static partial void LogUnreadableMessage(ILogger logger, long rowId, string messageType);
}
