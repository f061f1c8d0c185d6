using System.Text.Json;
using BusFlow.Contracts;
using MassTransit;

namespace BusFlow;

/// <summary>Where a pipeline instance stands.</summary>
public enum PipelineStatus
{
    Running,
    Completed,
    Failed,
    Cancelled,
}

/// <summary>Where a step stands.</summary>
public enum StepStatus
{
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Skipped,
}

/// <summary>Where one unit of work (a task step's attempt, or one map item) stands.</summary>
public enum WorkStatus
{
    Pending,
    Running,
    WaitingRetry,
    Suspended,
    Completed,
    Failed,
    Cancelled,
}

/// <summary>The saga state of one pipeline instance.</summary>
public sealed class PipelineState : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }

    /// <summary>The state machine's state name (mirrors <see cref="Status"/>).</summary>
    public string CurrentState { get; set; } = "";

    /// <summary>Optimistic concurrency version.</summary>
    public int Version { get; set; }

    public PipelineStatus Status { get; set; }

    public string Definition { get; set; } = "";

    /// <summary>The version of <see cref="Definition"/> the pipeline started on and is decided on; empty for a pipeline started before versions were recorded.</summary>
    public string DefinitionVersion { get; set; } = "";

    /// <summary>
    /// The W3C trace context of the pipeline's first traced transition: every later transition joins
    /// that trace, whichever process, path or timer brings its message. Null while it was never traced.
    /// </summary>
    public string? TraceParent { get; set; }

    public JsonElement? Input { get; set; }

    public Dictionary<string, string> Tags { get; set; } = [];

    /// <summary>The <see cref="PipelineTags.Tenant"/> tag's value, set with the tags at the start (a column of its own in the store).</summary>
    public string? Tenant { get; set; }

    public Guid? ParentPipelineId { get; set; }

    public string? ParentStepName { get; set; }

    /// <summary>The seq of the last event decided; the next event gets <c>LastSeq + 1</c>.</summary>
    public long LastSeq { get; set; }

    public DateTimeOffset StartedAt { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    /// <summary>The earliest retry, timeout or suspension expiry still pending; the clock wakes the saga then.</summary>
    public DateTimeOffset? NextDeadline { get; set; }

    public StepError? Error { get; set; }

    public string? FailedStep { get; set; }

    public List<StepRun> Steps { get; set; } = [];
}

/// <summary>One step of a running pipeline.</summary>
public sealed class StepRun
{
    public string Name { get; set; } = "";

    public StepStatus Status { get; set; }

    public DateTimeOffset? StartedAt { get; set; }

    public DateTimeOffset? FinishedAt { get; set; }

    public JsonElement? Result { get; set; }

    public StepError? Error { get; set; }

    /// <summary>One item for task and child steps; one per list element for map steps (filled when the step starts).</summary>
    public List<WorkItem> Items { get; set; } = [];
}

/// <summary>One unit of work: the current attempt of a task or child step, or of one map item.</summary>
public sealed class WorkItem
{
    /// <summary>For map items: the index in the mapped list.</summary>
    public int? Index { get; set; }

    public WorkStatus Status { get; set; }

    public int Attempt { get; set; }

    /// <summary>Identifies the attempt in flight; reports quoting another id are stale and ignored.</summary>
    public Guid? ExecutionId { get; set; }

    public DateTimeOffset? DispatchedAt { get; set; }

    /// <summary>When the attempt times out, the retry is due, or the suspension expires.</summary>
    public DateTimeOffset? DueAt { get; set; }

    public JsonElement? Item { get; set; }

    public JsonElement? Result { get; set; }

    public StepError? Error { get; set; }

    public Guid? SuspendId { get; set; }

    public JsonElement? Resume { get; set; }

    public Guid? ChildPipelineId { get; set; }

    /// <summary>A copy to change while this one stays as it was (JSON values and errors are immutable and shared).</summary>
    public WorkItem Copy() => (WorkItem)MemberwiseClone();
}
