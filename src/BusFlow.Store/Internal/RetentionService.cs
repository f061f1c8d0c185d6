using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Forgets pipelines that finished more than <see cref="BusFlowStoreOptions.Retention"/> ago: their
/// state, events, outbox rows and suspensions; and inbox rows older than the duplicate-detection window.
/// </summary>
internal sealed partial class RetentionService(IDbContextFactory<BusFlowDbContext> databases, BusFlowStoreOptions options, TimeProvider time, ILogger<RetentionService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await PruneAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogFailed(logger, ex);
            }

            try
            {
                await Task.Delay(options.RetentionInterval, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public async Task<int> PruneAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var inboxCutoff = now - options.InboxWindow;
        var pruned = await db.Inbox.Where(i => i.ReceivedAt < inboxCutoff).ExecuteDeleteAsync(cancellationToken);
        if (options.Retention is not { } retention)
        {
            return pruned;
        }

        var cutoff = now - retention;
        while (true)
        {
            var finished = await db.Pipelines.AsNoTracking()
                .Where(p => p.FinishedAt != null && p.FinishedAt < cutoff)
                .OrderBy(p => p.FinishedAt)
                .Select(p => p.CorrelationId)
                .Take(500)
                .ToListAsync(cancellationToken);
            if (finished.Count == 0)
            {
                break;
            }

            // Undelivered rows are kept: retention never drops what the broker has not confirmed.
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            var deliveredUpTo = await OutboxDelivery.DeliveredUpToAsync(db, cancellationToken);
            pruned += await db.Events.Where(e => finished.Contains(e.PipelineId) && e.Position <= deliveredUpTo).ExecuteDeleteAsync(cancellationToken);
            pruned += await db.Outbox.Where(o => finished.Contains(o.PipelineId) && o.DeliveredAt != null).ExecuteDeleteAsync(cancellationToken);
            pruned += await db.Suspensions.Where(s => finished.Contains(s.PipelineId)).ExecuteDeleteAsync(cancellationToken);
            // Keys go with their pipeline: a start repeated after retention is a new pipeline.
            pruned += await db.IdempotencyKeys.Where(k => finished.Contains(k.PipelineId)).ExecuteDeleteAsync(cancellationToken);
            var stillPending = await db.Events.Where(e => finished.Contains(e.PipelineId)).Select(e => e.PipelineId)
                .Concat(db.Outbox.Where(o => finished.Contains(o.PipelineId)).Select(o => o.PipelineId))
                .Distinct().ToListAsync(cancellationToken);
            var gone = finished.Except(stillPending).ToList();
            pruned += await db.WorkItems.Where(w => gone.Contains(w.PipelineId)).ExecuteDeleteAsync(cancellationToken);
            pruned += await db.Pipelines.Where(p => gone.Contains(p.CorrelationId)).ExecuteDeleteAsync(cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            LogPruned(logger, gone.Count, cutoff);
            if (gone.Count == 0)
            {
                break;
            }
        }

        return pruned;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Retention removed {Count} pipelines finished before {Cutoff:O}")]
    private static partial void LogPruned(ILogger logger, int count, DateTimeOffset cutoff);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Retention round failed; it runs again at the next interval")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
