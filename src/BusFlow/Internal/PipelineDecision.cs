using BusFlow.Contracts;

namespace BusFlow.Internal;

/// <summary>What one saga transition decided: events to record and publish, and commands to send, in order.</summary>
internal sealed class PipelineDecision
{
    public List<PipelineEvent> Events { get; } = [];

    /// <summary>Step commands, each for the worker queue named by <see cref="ExecuteStep.Worker"/>.</summary>
    public List<ExecuteStep> StepCommands { get; } = [];

    public List<StartPipeline> ChildStarts { get; } = [];

    public List<CancelPipeline> ChildCancels { get; } = [];

    public List<CancelStepExecutions> StepCancels { get; } = [];

    public ChildPipelineFinished? ParentNotice { get; set; }
}
