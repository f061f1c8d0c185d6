using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Internal;

/// <summary>
/// The transactional outbox for the saga: a transition's events become event-log rows and its
/// commands outbox rows in the saga's own database context, so they commit with the saga state in
/// one transaction; the outbox delivery sends them after commit.
/// </summary>
internal sealed class StoreDecisionRecorder(StoreSession session, PipelineFollowUp followUp, OutboxSignal signal, OutboxSender sender, TimeProvider time) : IPipelineDecisionRecorder
{
    /// <summary>
    /// From this many events a transition's rows go in one multi-row INSERT (a wide map step starting
    /// its items); fewer ride in EF Core's SaveChanges batch, which costs no extra round trip.
    /// </summary>
    internal const int BulkInsertFrom = 8;

    public async Task RecordAsync(ConsumeContext context, PipelineState state, PipelineDecision decision)
    {
        var db = session.Db;
        var now = time.GetUtcNow();
        var rows = decision.Events.Select(e => new PipelineEventRecord
        {
            PipelineId = e.PipelineId,
            Seq = e.Seq,
            Type = e.EventType,
            Timestamp = e.Timestamp,
            Payload = PipelineStateMap.Serialize(e),
        }).ToList();
        if (rows.Count >= BulkInsertFrom)
        {
            session.AddBulkEvents(rows);
        }
        else
        {
            db.Events.AddRange(rows);
        }

        foreach (var e in decision.Events)
        {
            if (e is StepSuspended suspended)
            {
                db.Suspensions.Add(new SuspensionRecord
                {
                    SuspendId = suspended.SuspendId,
                    PipelineId = suspended.PipelineId,
                    StepName = suspended.StepName,
                    ItemIndex = suspended.ItemIndex,
                    CreatedAt = now,
                    ExpiresAt = suspended.ExpiresAt,
                });
            }
        }

        var outbox = new List<(OutboxMessageRecord, object)>();
        foreach (var outgoing in decision.Messages())
        {
            var row = OutboxRows.Create(outgoing.Message, outgoing.Destination, outgoing.ConcernsPipeline ?? state.CorrelationId, now);
            db.Outbox.Add(row);
            outbox.Add((row, outgoing.Message));
        }

        if (decision.ClosedSuspensions.Count > 0)
        {
            var closed = decision.ClosedSuspensions;
            foreach (var suspension in await db.Suspensions.Where(s => closed.Contains(s.SuspendId)).ToListAsync(context.CancellationToken))
            {
                suspension.ClosedAt = now;
            }
        }

        var pipelineId = state.CorrelationId;
        var deadline = state.NextDeadline;
        var events = decision.Events.ToList();
        session.AfterCommit(async () =>
        {
            // Events wait for the delivery to position them; the messages go out from here.
            if (events.Count > 0)
            {
                signal.Wake();
            }

            await sender.SendCommittedAsync(outbox, CancellationToken.None);
            await followUp.AfterCommitAsync(pipelineId, deadline, events, CancellationToken.None);
        });
    }
}
