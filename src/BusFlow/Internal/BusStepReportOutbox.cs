using BusFlow.Contracts;
using MassTransit;

namespace BusFlow.Internal;

/// <summary>Without a store: effects run, then the report is published.</summary>
internal sealed class BusStepReportOutbox : IStepReportOutbox
{
    public ValueTask<bool> AlreadyHandledAsync(ConsumeContext<ExecuteStep> context) => ValueTask.FromResult(false);

    public async Task ReportAsync(ConsumeContext<ExecuteStep> context, object report, IReadOnlyList<Func<StepCommitContext, Task>> effects)
    {
        foreach (var effect in effects)
        {
            await effect(new StepCommitContext(null, null, context.CancellationToken));
        }

        await context.Publish(report, report.GetType());
    }
}
