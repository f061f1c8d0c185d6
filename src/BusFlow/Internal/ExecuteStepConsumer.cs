using BusFlow.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Runs one step attempt on the worker registered under <see cref="ExecuteStep.Worker"/> and reports
/// its progress and outcome to the saga. One consumer type serves every worker queue of the process.
/// </summary>
internal sealed partial class ExecuteStepConsumer(
    PipelineRegistry registry,
    RunningSteps running,
    WorkerSlots slots,
    IStepReportOutbox reports,
    IServiceProvider services,
    TimeProvider time,
    ILogger<ExecuteStepConsumer> logger) : IConsumer<ExecuteStep>
{
    public async Task Consume(ConsumeContext<ExecuteStep> context)
    {
        var command = context.Message;
        if (!registry.Workers.TryGetValue(command.Worker, out var worker))
        {
            await context.Publish(new ReportStepFaulted
            {
                PipelineId = command.PipelineId,
                ExecutionId = command.ExecutionId,
                Error = new StepError("unknown_worker", $"The process consuming queue '{QueueNames.Worker(command.Worker)}' has no worker '{command.Worker}'."),
                Retryable = false,
            });
            return;
        }

        if (await reports.AlreadyHandledAsync(context))
        {
            LogDuplicate(logger, command.StepName, command.PipelineId, command.Attempt);
            return;
        }

        // The run and its report (sent under it: the saga's transition continues the trace from here).
        using var activity = PipelineActivities.Step(command);
        StepOutcome? outcome;
        using (await slots.EnterAsync(command.Worker, context.CancellationToken))
        {
            outcome = await StepAttempt.RunAsync(worker, command, services, report => context.Publish(report), running, time, logger, context.CancellationToken);
        }

        if (outcome is not null)
        {
            await reports.ReportAsync(context, outcome.Report, outcome.Effects);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) was delivered again after its outcome was recorded; not run twice")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId, int attempt);
}

/// <summary>Stops the attempts named in <see cref="CancelStepExecutions"/> that run in this process.</summary>
internal sealed class CancelStepExecutionsConsumer(RunningSteps running) : IConsumer<CancelStepExecutions>
{
    public Task Consume(ConsumeContext<CancelStepExecutions> context)
    {
        foreach (var id in context.Message.ExecutionIds)
        {
            running.Cancel(id);
        }

        return Task.CompletedTask;
    }
}
