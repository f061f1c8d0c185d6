using MassTransit;

namespace BusFlow.Store.Internal;

/// <summary>
/// The transactional outbox for the saga: a transition's events become event-log rows and its
/// commands outbox rows in the saga's own database context (<see cref="StoreSession"/>), so they
/// commit with the saga state in one transaction; <see cref="DecisionOutbox"/> says how.
/// </summary>
internal sealed class StoreDecisionRecorder(StoreSession session, DecisionOutbox outbox) : IPipelineDecisionRecorder
{
    public Task RecordAsync(ConsumeContext context, PipelineState state, PipelineDecision decision) =>
        outbox.RecordAsync(session, state, decision, context.CancellationToken);
}
