using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Internal;

/// <summary>
/// Adds what one transition decided to its database context: events as event-log rows, commands
/// and notices as outbox rows, opened and closed suspensions; and arranges what follows the commit:
/// the messages go out from here (a step whose worker
/// runs in this process is run here instead, see <see cref="ColocatedStepFold"/>), the clock and the
/// observers follow up.
/// </summary>
internal sealed class DecisionOutbox(
    IPipelineCommitFollowUp followUp,
    OutboxSender sender,
    ColocatedStepFold colocated,
    BusFlowStoreOptions options,
    TimeProvider time)
{
    public async Task RecordAsync(StoreSession session, PipelineState state, PipelineDecision decision, CancellationToken cancellationToken)
    {
        var db = session.Db;
        var now = time.GetUtcNow();
        // Event rows go in the group's one multi-row INSERT (GroupCommit), sorted by pipeline and seq.
        session.AddBulkEvents(decision.Events.Select(e => new PipelineEventRecord
        {
            PipelineId = e.PipelineId,
            Seq = e.Seq,
            Type = e.EventType,
            Tenant = e.Tags.GetValueOrDefault(PipelineTags.Tenant),
            Timestamp = e.Timestamp,
            Payload = PipelineStateMap.Serialize(e),
            Decided = e,
        }));

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

        var outbox = new List<(OutboxMessageRecord Row, object Message)>();
        foreach (var outgoing in decision.Messages())
        {
            var row = OutboxRows.Create(outgoing.Message, outgoing.Destination, outgoing.ConcernsPipeline ?? state.CorrelationId, now);
            db.Outbox.Add(row);
            outbox.Add((row, outgoing.Message));
        }

        if (decision.ClosedSuspensions.Count > 0)
        {
            var closed = decision.ClosedSuspensions;
            foreach (var suspension in await db.Suspensions.Where(s => closed.Contains(s.SuspendId)).ToListAsync(cancellationToken))
            {
                suspension.ClosedAt = now;
            }
        }

        var pipelineId = state.CorrelationId;
        var deadline = state.NextDeadline;
        var events = decision.Events.ToList();
        session.AfterCommit(async () =>
        {
            // The group handed the events to the delivery; the messages go out from here.
            var remote = options.ColocateSteps
                ? outbox.Where(o => !(o.Message is ExecuteStep command && colocated.TryRun(command, o.Row))).ToList()
                : outbox;
            await sender.SendCommittedAsync(remote, CancellationToken.None);
            await followUp.AfterCommitAsync(pipelineId, deadline, events, CancellationToken.None);
        });
    }
}
