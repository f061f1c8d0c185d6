using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// What a store tells the engine once a transition is durable: the pipeline's clock learns its next
/// deadline, the <c>BusFlow</c> meter counts the events and in-process observers
/// (<see cref="IPipelineObserver"/>) see them. Call it only after commit, so that a wake-up never
/// reads a state older than its deadline and observers never see an event that was rolled back.
/// </summary>
public interface IPipelineCommitFollowUp
{
    /// <summary>After <paramref name="pipelineId"/>'s transition committed with <paramref name="events"/> and <paramref name="nextDeadline"/>.</summary>
    Task AfterCommitAsync(Guid pipelineId, DateTimeOffset? nextDeadline, IReadOnlyList<PipelineEvent> events, CancellationToken cancellationToken);

    /// <summary>A store starting up hands over each running pipeline's committed deadline, so that the clock wakes it.</summary>
    void RearmDeadline(Guid pipelineId, DateTimeOffset deadline);
}
