using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// Runs a step whose worker is registered in this process without the broker round trip, for a store
/// that folds the outcome into the pipeline's next transition (BusFlow.Store does). Call
/// <see cref="TryRun"/> only once the transition that dispatched the step committed, so the command
/// is durable; whatever goes wrong on this path must leave the command to be sent on the ordinary
/// path later.
/// </summary>
public interface IColocatedStepRunner
{
    /// <summary>
    /// Starts <paramref name="command"/> in this process when its worker is registered here and has a
    /// free slot; false leaves the command to the bus. <paramref name="progress"/> records a progress
    /// report or streamed chunk (before the outcome, in order), <paramref name="outcome"/> the outcome
    /// (null when the saga stopped the attempt and wants no report).
    /// </summary>
    bool TryRun(ExecuteStep command, Func<ReportStepProgress, CancellationToken, Task> progress, Func<StepOutcome?, CancellationToken, Task> outcome);
}
