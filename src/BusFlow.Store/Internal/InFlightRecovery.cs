using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Internal;

/// <summary>
/// For the in-memory transport, whose queues die with the process: at start, outbox messages that
/// were handed to the bus but may never have been consumed are delivered again. Only what can still
/// matter is resent (commands and reports of attempts the saga still considers running, and recent
/// starts, cancels and child notices of running pipelines); the worker and saga inboxes drop what
/// was in fact consumed, because a resent row keeps its MessageId.
/// </summary>
internal static class InFlightRecovery
{
    public static async Task<int> RequeueAsync(BusFlowDbContext db, TimeSpan window, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var running = await db.Pipelines.AsNoTracking().Where(p => p.Status == PipelineStatus.Running).ToListAsync(cancellationToken);
        if (running.Count == 0)
        {
            return 0;
        }

        await WorkItemRows.FillAsync(db, running, cancellationToken);

        var runningIds = running.Select(p => p.CorrelationId).ToList();
        var attempts = running.SelectMany(p => p.Steps).SelectMany(s => s.Items)
            .Where(i => i.Status == WorkStatus.Running && i.ExecutionId is not null)
            .Select(i => i.ExecutionId!.Value)
            .ToHashSet();
        var since = now - window;
        var delivered = await db.Outbox
            .Where(o => o.DeliveredAt != null && runningIds.Contains(o.PipelineId) && o.CreatedAt > since)
            .ToListAsync(cancellationToken);
        var requeued = 0;
        foreach (var row in delivered)
        {
            var keep = OutboxRows.Read(row)?.Message switch
            {
                ExecuteStep m => attempts.Contains(m.ExecutionId),
                ReportStepSucceeded m => attempts.Contains(m.ExecutionId),
                ReportStepFaulted m => attempts.Contains(m.ExecutionId),
                ReportStepSuspended m => attempts.Contains(m.ExecutionId),
                StartPipeline or CancelPipeline or BusFlow.Internal.ChildPipelineFinished => true,
                _ => false,
            };
            if (keep)
            {
                row.DeliveredAt = null;
                requeued++;
            }
        }

        await db.SaveChangesAsync(cancellationToken);
        return requeued;
    }
}
