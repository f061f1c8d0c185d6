using System.Text.Json;

namespace BusFlow.Contracts;

/// <summary>A pipeline instance was accepted and began to run.</summary>
public sealed record PipelineStarted : PipelineEvent
{
    /// <summary>The pipeline's input as given at start.</summary>
    public JsonElement? Input { get; init; }

    /// <summary>For a child pipeline: the parent's step that started it.</summary>
    public string? ParentStepName { get; init; }

    /// <summary>The version of the definition the pipeline runs on, to its end (docs/protocol.md).</summary>
    public string? DefinitionVersion { get; init; }
}

/// <summary>A step (or a map item) was dispatched to its worker.</summary>
public sealed record StepStarted : StepEvent
{
    /// <summary>For a child-pipeline step: the id of the child pipeline.</summary>
    public Guid? ChildPipelineId { get; init; }
}

/// <summary>A worker reported progress, or streamed a chunk, from inside a step.</summary>
public sealed record StepProgress : StepEvent
{
    /// <summary>Completion between 0 and 100, when the worker knows it.</summary>
    public double? Percent { get; init; }

    /// <summary>A human-readable progress message.</summary>
    public string? Message { get; init; }

    /// <summary>A streamed chunk of output (Hatchet's <c>put_stream</c>).</summary>
    public JsonElement? Chunk { get; init; }
}

/// <summary>A step (or a map item) finished successfully.</summary>
public sealed record StepCompleted : StepEvent
{
    /// <summary>Time from dispatch to result, in milliseconds.</summary>
    public double DurationMs { get; init; }

    /// <summary>The step's output.</summary>
    public JsonElement? Result { get; init; }
}

/// <summary>A step attempt failed: it threw, faulted, timed out, or its suspension expired.</summary>
public sealed record StepFailed : StepEvent
{
    /// <summary>Time from dispatch to failure, in milliseconds.</summary>
    public double DurationMs { get; init; }

    /// <summary>What went wrong.</summary>
    public required StepError Error { get; init; }

    /// <summary>True when the retry policy will run another attempt.</summary>
    public bool WillRetry { get; init; }

    /// <summary>When the next attempt is due, if <see cref="WillRetry"/>.</summary>
    public DateTimeOffset? RetryAt { get; init; }
}

/// <summary>A step is waiting for an outside answer (human in the loop).</summary>
public sealed record StepSuspended : StepEvent
{
    /// <summary>The id to answer at <c>POST /api/pipelines/{id}/actions/{suspendId}</c>.</summary>
    public required Guid SuspendId { get; init; }

    /// <summary>Why the step waits, for the person answering.</summary>
    public string? Reason { get; init; }

    /// <summary>Data shown to whoever answers.</summary>
    public JsonElement? Request { get; init; }

    /// <summary>When the suspension expires and the step fails.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }
}

/// <summary>Every step finished successfully.</summary>
public sealed record PipelineCompleted : PipelineEvent
{
    /// <summary>Total run time in milliseconds.</summary>
    public double DurationMs { get; init; }

    /// <summary>The results of the pipeline's final steps (those nothing depends on), by step name.</summary>
    public IReadOnlyDictionary<string, JsonElement> Outputs { get; init; } = new Dictionary<string, JsonElement>();
}

/// <summary>The pipeline stopped because a step failed for good.</summary>
public sealed record PipelineFailed : PipelineEvent
{
    /// <summary>Total run time in milliseconds.</summary>
    public double DurationMs { get; init; }

    /// <summary>The step whose failure failed the pipeline.</summary>
    public string? FailedStep { get; init; }

    /// <summary>The error of that step.</summary>
    public required StepError Error { get; init; }
}

/// <summary>The pipeline was cancelled on request.</summary>
public sealed record PipelineCancelled : PipelineEvent
{
    /// <summary>Total run time in milliseconds.</summary>
    public double DurationMs { get; init; }

    /// <summary>The reason given with the cancel request.</summary>
    public string? Reason { get; init; }
}

/// <summary>A step error as reported to clients.</summary>
/// <param name="Kind">A short machine-readable kind: an exception type name, <c>timeout</c>, <c>suspension_expired</c>, <c>invalid_input</c>, <c>unknown_definition</c>, <c>unknown_worker</c>, <c>child_cancelled</c>, or a kind the step chose.</param>
/// <param name="Message">A human-readable message.</param>
public sealed record StepError(string Kind, string Message);
