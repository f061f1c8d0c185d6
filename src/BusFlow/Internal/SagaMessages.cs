using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Internal;

/// <summary>Sent by the pipeline clock when a pipeline's <see cref="PipelineState.NextDeadline"/> is due.</summary>
public sealed record WakePipeline(Guid PipelineId);

/// <summary>Sent by a child pipeline's saga to its parent when the child ends.</summary>
public sealed record ChildPipelineFinished
{
    public required Guid PipelineId { get; init; }

    public required Guid ChildPipelineId { get; init; }

    public required PipelineStatus Outcome { get; init; }

    public IReadOnlyDictionary<string, JsonElement>? Outputs { get; init; }

    public StepError? Error { get; init; }
}
