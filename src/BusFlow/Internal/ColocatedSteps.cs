using System.Collections.Concurrent;
using BusFlow.Contracts;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Runs a step whose worker lives in the saga's own process without the broker round trip: the
/// saga's store calls <see cref="TryRun"/> after the transition that dispatched the step committed
/// (so the command is durable), and folds the outcome into the pipeline's next transition instead of
/// a worker transaction and a report message. Whatever goes wrong on this path (the process stops,
/// the fold fails) leaves the command undelivered in the outbox, which sends it on the ordinary path
/// later; the worker's inbox and the fold's inbox row keep the step's enlisted effects to one commit.
/// </summary>
internal sealed partial class ColocatedSteps(
    PipelineRegistry registry,
    WorkerSlots slots,
    RunningSteps running,
    IServiceScopeFactory scopes,
    TimeProvider time,
    ILogger<ColocatedSteps> logger) : IColocatedStepRunner, IHostedService, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Guid, Task> _runs = new();

    /// <summary>
    /// Starts <paramref name="command"/> in this process when its worker is registered here and has a
    /// free slot; false leaves the command to the bus. <paramref name="progress"/> records a progress
    /// report or streamed chunk (before the outcome, in order), <paramref name="fold"/> the outcome
    /// (null when the saga stopped the attempt).
    /// </summary>
    public bool TryRun(ExecuteStep command, Func<ReportStepProgress, CancellationToken, Task> progress, Func<StepOutcome?, CancellationToken, Task> fold)
    {
        if (_stopping.IsCancellationRequested
            || !registry.Workers.TryGetValue(command.Worker, out var worker)
            || !slots.TryEnter(command.Worker, out var slot))
        {
            return false;
        }

        // Registered before it starts, so a stop that begins meanwhile waits for it.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = RunAsync(worker, command, slot, progress, fold, started.Task);
        _runs[command.ExecutionId] = run;
        started.SetResult();
        return true;
    }

    private async Task RunAsync(WorkerRegistration worker, ExecuteStep command, IDisposable slot, Func<ReportStepProgress, CancellationToken, Task> progress, Func<StepOutcome?, CancellationToken, Task> fold, Task started)
    {
        await started.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        var stopping = _stopping.Token;
        try
        {
            // The scope lives until the outcome committed: enlisted effects may use its services.
            await using var scope = scopes.CreateAsyncScope();
            // The run and the transition its outcome folds into, under the step's span.
            using var activity = PipelineActivities.Step(command);
            StepOutcome? outcome;
            using (slot)
            {
                outcome = await StepAttempt.RunAsync(worker, command, scope.ServiceProvider, report => progress(report, stopping), running, time, logger, stopping);
            }

            // A stopped attempt (null) wants no report, but its command must not run again either.
            await fold(outcome, stopping);
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // Stopping: the command stays undelivered and runs again on the ordinary path.
        }
        catch (Exception ex)
        {
            LogColocatedFailed(logger, ex, command.StepName, command.PipelineId, command.Attempt);
        }
        finally
        {
            _runs.TryRemove(command.ExecutionId, out _);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Stops the co-located attempts and waits for them; their commands stay in the outbox.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _stopping.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            // Disposed with its container before it was stopped (test harnesses do): nothing runs any more.
            return;
        }

        await Task.WhenAll(_runs.Values).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public void Dispose() => _stopping.Dispose();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Co-located step {StepName} of pipeline {PipelineId} (attempt {Attempt}) could not record its outcome; its command is sent on the ordinary path after the outbox's grace period")]
    private static partial void LogColocatedFailed(ILogger logger, Exception exception, string stepName, Guid pipelineId, int attempt);
}
