using System.Data.Common;
using BusFlow.Contracts;
using MassTransit;

namespace BusFlow;

/// <summary>
/// Where a step attempt's outcome goes. The default publishes it at once. BusFlow.Store keeps an
/// inbox: a redelivered <see cref="ExecuteStep"/> whose outcome was already recorded does not run
/// again, and the outcome, the inbox mark and the step's enlisted effects commit in one transaction.
/// </summary>
public interface IStepReportOutbox
{
    /// <summary>True when this very delivery's outcome is already recorded: the step must not run again.</summary>
    ValueTask<bool> AlreadyHandledAsync(ConsumeContext<ExecuteStep> context);

    /// <summary>Runs the enlisted effects and delivers the report (a ReportStep* message) as one unit.</summary>
    Task ReportAsync(ConsumeContext<ExecuteStep> context, object report, IReadOnlyList<Func<StepCommitContext, Task>> effects);
}

/// <summary>
/// Handed to effects a step enlisted with <see cref="StepContext.Enlist"/>: with a store, the
/// connection and transaction in which the step's outcome commits; without one, both are null.
/// Use them only inside the effect: the store's database contexts are pooled, so the connection
/// object serves other work afterwards (do not keep it or attach event handlers to it).
/// </summary>
public sealed record StepCommitContext(DbConnection? Connection, DbTransaction? Transaction, CancellationToken CancellationToken);
