using BusFlow.Contracts;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// What happens once a transition is durable: the clock learns the next deadline, the <c>BusFlow</c>
/// meter counts the events and in-process observers see them. Running it only after commit means a wake-up never reads a state older
/// than the deadline it was scheduled for, and observers never see an event that was rolled back.
/// </summary>
internal sealed partial class PipelineFollowUp(PipelineClock clock, PipelineMetrics metrics, IEnumerable<IPipelineObserver> observers, ILogger<PipelineFollowUp> logger) : IPipelineCommitFollowUp
{
    public void RearmDeadline(Guid pipelineId, DateTimeOffset deadline) => clock.Schedule(pipelineId, deadline);

    public async Task AfterCommitAsync(Guid pipelineId, DateTimeOffset? nextDeadline, IReadOnlyList<PipelineEvent> events, CancellationToken cancellationToken)
    {
        if (nextDeadline is { } deadline)
        {
            clock.Schedule(pipelineId, deadline);
        }

        foreach (var e in events)
        {
            metrics.Record(e);
        }

        foreach (var observer in observers)
        {
            foreach (var e in events)
            {
                try
                {
                    await observer.OnEventAsync(e, cancellationToken);
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
                {
                    LogObserverFailed(logger, ex, observer.GetType().Name, e.EventType, e.PipelineId);
                }
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Observer {Observer} failed on {EventType} of pipeline {PipelineId}; the pipeline goes on")]
    private static partial void LogObserverFailed(ILogger logger, Exception exception, string observer, string eventType, Guid pipelineId);
}
