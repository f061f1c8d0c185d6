using System.Text.Json;

namespace BusFlow.Contracts;

/// <summary>Starts a pipeline instance. Sending it twice with one id starts one pipeline.</summary>
public sealed record StartPipeline
{
    /// <summary>The id the new pipeline gets; chosen by the caller so a retried start is harmless.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The name of a registered pipeline definition.</summary>
    public required string Definition { get; init; }

    /// <summary>The pipeline's input, handed to every step.</summary>
    public JsonElement? Input { get; init; }

    /// <summary>Tags copied onto every event of the pipeline and its children.</summary>
    public IReadOnlyDictionary<string, string>? Tags { get; init; }

    /// <summary>Set when a step of another pipeline starts this one as its child.</summary>
    public Guid? ParentPipelineId { get; init; }

    /// <summary>The parent's step that starts this child.</summary>
    public string? ParentStepName { get; init; }

    /// <summary>The W3C trace context of the request (or the parent's transition) that starts the pipeline, when traced: the pipeline's trace continues it.</summary>
    public string? TraceParent { get; init; }
}

/// <summary>Asks a running pipeline to stop: nothing new is dispatched, running steps get a cancellation signal.</summary>
public sealed record CancelPipeline
{
    /// <summary>The pipeline to cancel.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>Why, recorded in <see cref="PipelineCancelled"/>.</summary>
    public string? Reason { get; init; }
}

/// <summary>Answers a suspended step; the step resumes with the payload.</summary>
public sealed record SubmitStepAction
{
    /// <summary>The pipeline the suspended step belongs to.</summary>
    public required Guid PipelineId { get; init; }

    /// <summary>The id from <see cref="StepSuspended"/>.</summary>
    public required Guid SuspendId { get; init; }

    /// <summary>The answer handed to the resumed step.</summary>
    public JsonElement? Payload { get; init; }
}
