using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// In-process hook for code living beside the saga: called once for every event the saga decides, in
/// seq order per pipeline, after the transition that decided it. Exceptions are logged and ignored;
/// an observer never changes the pipeline's course.
/// </summary>
public interface IPipelineObserver
{
    ValueTask OnEventAsync(PipelineEvent pipelineEvent, CancellationToken cancellationToken);
}

/// <summary>An <see cref="IPipelineObserver"/> with one overridable method per event type.</summary>
public abstract class PipelineObserver : IPipelineObserver
{
    public ValueTask OnEventAsync(PipelineEvent pipelineEvent, CancellationToken cancellationToken) => pipelineEvent switch
    {
        PipelineStarted e => OnPipelineStarted(e, cancellationToken),
        StepStarted e => OnStepStarted(e, cancellationToken),
        StepProgress e => OnStepProgress(e, cancellationToken),
        StepCompleted e => OnStepCompleted(e, cancellationToken),
        StepFailed e => OnStepFailed(e, cancellationToken),
        StepSuspended e => OnStepSuspended(e, cancellationToken),
        PipelineCompleted e => OnPipelineCompleted(e, cancellationToken),
        PipelineFailed e => OnPipelineFailed(e, cancellationToken),
        PipelineCancelled e => OnPipelineCancelled(e, cancellationToken),
        _ => ValueTask.CompletedTask,
    };

    protected virtual ValueTask OnPipelineStarted(PipelineStarted e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnStepStarted(StepStarted e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnStepProgress(StepProgress e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnStepCompleted(StepCompleted e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnStepFailed(StepFailed e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnStepSuspended(StepSuspended e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnPipelineCompleted(PipelineCompleted e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnPipelineFailed(PipelineFailed e, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    protected virtual ValueTask OnPipelineCancelled(PipelineCancelled e, CancellationToken cancellationToken) => ValueTask.CompletedTask;
}
