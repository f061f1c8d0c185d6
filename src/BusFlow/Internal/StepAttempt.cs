using System.Text.Json;
using BusFlow.Contracts;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Runs one step attempt on its worker: the attempt's deadline and cancel signals stop it, an
/// exception becomes a retryable failure. Shared by the worker queue's consumer and by steps that
/// run co-located with the saga.
/// </summary>
internal static partial class StepAttempt
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>The outcome to report, or null when the saga stopped the attempt (it has moved on and wants no report).</summary>
    public static async Task<StepOutcome?> RunAsync(
        WorkerRegistration worker,
        ExecuteStep command,
        IServiceProvider services,
        Func<ReportStepProgress, Task> progress,
        RunningSteps running,
        TimeProvider time,
        ILogger logger,
        CancellationToken cancellationToken)
    {
        using var cancellation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (command.Deadline is { } deadline)
        {
            cancellation.CancelAfter(Max(deadline - time.GetUtcNow(), TimeSpan.Zero));
        }

        using var registration = running.Register(command.ExecutionId, cancellation);
        var step = new StepContext(command, Json, progress, cancellation.Token);
        StepResult result;
        try
        {
            result = await worker.Invoke(services, step);
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // The saga stopped this attempt (cancel, fail-fast or timeout) and has already moved on.
            LogStopped(logger, command.StepName, command.PipelineId, command.Attempt);
            return null;
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
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
        return new StepOutcome(report, result is StepResult.Failed ? [] : step.Effects);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    [LoggerMessage(Level = LogLevel.Information, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) was stopped by the saga")]
    private static partial void LogStopped(ILogger logger, string stepName, Guid pipelineId, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Step {StepName} of pipeline {PipelineId} (attempt {Attempt}) threw")]
    private static partial void LogStepThrew(ILogger logger, Exception exception, string stepName, Guid pipelineId, int attempt);
}
