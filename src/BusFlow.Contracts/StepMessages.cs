using System.Text.Json;

namespace BusFlow.Contracts;

/// <summary>Sent by the saga to a step's worker queue: run one attempt of one step (or one map item).</summary>
public sealed record ExecuteStep
{
    /// <summary>The pipeline the step belongs to.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>Unique per dispatched attempt; every report about this attempt quotes it.</summary>
    public required Guid ExecutionId { get; init; }

    /// <summary>The pipeline definition's name.</summary>
    public required string Definition { get; init; }

    /// <summary>The step's name.</summary>
    public required string StepName { get; init; }

    /// <summary>The worker the step runs on.</summary>
    public required string Worker { get; init; }

    /// <summary>Attempt number, starting at 1.</summary>
    public required int Attempt { get; init; }

    /// <summary>For map steps: the index of the item being processed.</summary>
    public int? ItemIndex { get; init; }

    /// <summary>For map steps: the item being processed.</summary>
    public JsonElement? Item { get; init; }

    /// <summary>The pipeline's input.</summary>
    public JsonElement? PipelineInput { get; init; }

    /// <summary>The outputs of the steps this step consumes, by their output names.</summary>
    public IReadOnlyDictionary<string, JsonElement> Inputs { get; init; } = new Dictionary<string, JsonElement>();

    /// <summary>The pipeline's tags.</summary>
    public IReadOnlyDictionary<string, string> Tags { get; init; } = PipelineEvent.EmptyTags;

    /// <summary>When the saga will give up on this attempt.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>When the step was suspended and then answered: the answer.</summary>
    public JsonElement? Resume { get; init; }

    /// <summary>The W3C trace context of the transition that dispatched the attempt, when it was traced: the attempt's span joins that trace.</summary>
    public string? TraceParent { get; init; }
}

/// <summary>A worker's progress report from inside a step.</summary>
public sealed record ReportStepProgress
{
    /// <summary>The pipeline.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The attempt being reported on.</summary>
    public required Guid ExecutionId { get; init; }

    /// <summary>Completion between 0 and 100.</summary>
    public double? Percent { get; init; }

    /// <summary>A progress message.</summary>
    public string? Message { get; init; }

    /// <summary>A streamed chunk of output.</summary>
    public JsonElement? Chunk { get; init; }
}

/// <summary>A worker finished an attempt successfully.</summary>
public sealed record ReportStepSucceeded
{
    /// <summary>The pipeline.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The attempt being reported on.</summary>
    public required Guid ExecutionId { get; init; }

    /// <summary>The step's output.</summary>
    public JsonElement? Result { get; init; }
}

/// <summary>A worker's attempt failed.</summary>
public sealed record ReportStepFaulted
{
    /// <summary>The pipeline.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The attempt being reported on.</summary>
    public required Guid ExecutionId { get; init; }

    /// <summary>What went wrong.</summary>
    public required StepError Error { get; init; }

    /// <summary>False when retrying cannot help (the step said so); the retry policy is then skipped.</summary>
    public bool Retryable { get; init; } = true;
}

/// <summary>A worker's step asks to wait for an outside answer.</summary>
public sealed record ReportStepSuspended
{
    /// <summary>The pipeline.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The attempt being reported on.</summary>
    public required Guid ExecutionId { get; init; }

    /// <summary>Why the step waits.</summary>
    public string? Reason { get; init; }

    /// <summary>Data for whoever answers.</summary>
    public JsonElement? Request { get; init; }

    /// <summary>How long to wait before the step fails; null for the step's default.</summary>
    public TimeSpan? Timeout { get; init; }
}

/// <summary>Published to every worker node: stop these running attempts (cancel, fail-fast, timeout).</summary>
public sealed record CancelStepExecutions
{
    /// <summary>The pipeline.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The attempts to stop.</summary>
    public required IReadOnlyList<Guid> ExecutionIds { get; init; }

    /// <summary>Why.</summary>
    public string? Reason { get; init; }
}
