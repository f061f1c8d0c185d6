using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;

namespace BusFlow;

/// <summary>What one saga transition decided: events to record and publish, and commands to send, in order.</summary>
public sealed class PipelineDecision
{
    public List<PipelineEvent> Events { get; } = [];

    /// <summary>Step commands, each for the worker queue named by <see cref="ExecuteStep.Worker"/>.</summary>
    public List<ExecuteStep> StepCommands { get; } = [];

    public List<StartPipeline> ChildStarts { get; } = [];

    public List<CancelPipeline> ChildCancels { get; } = [];

    public List<CancelStepExecutions> StepCancels { get; } = [];

    public ChildPipelineFinished? ParentNotice { get; set; }

    /// <summary>Suspensions this transition answered or let expire.</summary>
    public List<Guid> ClosedSuspensions { get; } = [];

    /// <summary>Every outgoing message except the events, in the order they are to be delivered.</summary>
    public IEnumerable<OutgoingMessage> Messages()
    {
        foreach (var command in StepCommands)
        {
            yield return new OutgoingMessage(command, QueueNames.WorkerAddress(command.Worker));
        }

        foreach (var start in ChildStarts)
        {
            yield return new OutgoingMessage(start, null);
        }

        foreach (var cancel in ChildCancels)
        {
            yield return new OutgoingMessage(cancel, null);
        }

        foreach (var cancel in StepCancels)
        {
            yield return new OutgoingMessage(cancel, null);
        }

        if (ParentNotice is { } notice)
        {
            yield return new OutgoingMessage(notice, null);
        }
    }
}

/// <summary>A message to send to <see cref="Destination"/>, or to publish when it is null.</summary>
public sealed record OutgoingMessage(object Message, Uri? Destination)
{
    /// <summary>The pipeline the message concerns: the parent for a child's notice, else the deciding pipeline (null).</summary>
    public Guid? ConcernsPipeline => Message is ChildPipelineFinished notice ? notice.PipelineId : null;
}

/// <summary>
/// Makes a transition's decision durable and delivers it. The default publishes at once on the bus;
/// BusFlow.Store records events and messages in the saga's own database transaction (the outbox).
/// </summary>
public interface IPipelineDecisionRecorder
{
    Task RecordAsync(ConsumeContext context, PipelineState state, PipelineDecision decision);
}
