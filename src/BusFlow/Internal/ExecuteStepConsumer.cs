using System.Text.Json;
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
    IStepReportOutbox reports,
    IServiceProvider services,
    TimeProvider time,
    ILogger<ExecuteStepConsumer> logger) : IConsumer<ExecuteStep>
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

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

        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
        if (command.Deadline is { } deadline)
        {
            cancellation.CancelAfter(Max(deadline - time.GetUtcNow(), TimeSpan.Zero));
        }

        using var registration = running.Register(command.ExecutionId, cancellation);
        var step = new StepContext(command, Json, report => context.Publish(report), cancellation.Token);
        StepResult result;
        try
        {
            result = await worker.Invoke(services, step);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            // The saga stopped this attempt (cancel, fail-fast or timeout) and has already moved on.
            LogStopped(logger, command.StepName, command.PipelineId, command.Attempt);
            return;
        }
        catch (Exception ex) when (!context.CancellationToken.IsCancellationRequested)
        {
            LogStepThrew(logger, ex, command.StepName, command.PipelineId, command.Attempt);
            result = new StepResult.Failed(new StepError(ex.GetType().Name, ex.Message), Retryable: true);
        }

        object report = result switch
        {
            StepResult.Succeeded s => new ReportStepSucceeded
            {
                PipelineId = command.PipelineId,
                ExecutionId = command.ExecutionId,
                Result = s.Value is null ? null : s.Value as JsonElement? ?? JsonSerializer.SerializeToElement(s.Value, s.Value.GetType(), Json),
            },
            StepResult.Failed f => new ReportStepFaulted { PipelineId = command.PipelineId, ExecutionId = command.ExecutionId, Error = f.Error, Retryable = f.Retryable },
            StepResult.Suspended s => new ReportStepSuspended
            {
                PipelineId = command.PipelineId,
                ExecutionId = command.ExecutionId,
                Reason = s.Reason,
                Request = s.Request is null ? null : JsonSerializer.SerializeToElement(s.Request, s.Request.GetType(), Json),
                Timeout = s.Timeout,
            },
            _ => throw new InvalidOperationException($"Unknown step result {result.GetType().Name}."),
        };
        await reports.ReportAsync(context, report, result is StepResult.Failed ? [] : step.Effects);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    [LoggerMessage(Level = LogLevel.Information, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) was stopped by the saga")]
    private static partial void LogStopped(ILogger logger, string stepName, Guid pipelineId, int attempt);

    [LoggerMessage(Level = LogLevel.Information, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) was delivered again after its outcome was recorded; not run twice")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) threw")]
    private static partial void LogStepThrew(ILogger logger, Exception exception, string stepName, Guid pipelineId, int attempt);
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
