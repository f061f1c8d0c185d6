using System.Collections.Frozen;
using BusFlow.Contracts;

namespace BusFlow.Internal;

/// <summary>
/// Every message the pipeline saga takes, in one list: which pipeline it is for, whether it starts
/// one, and what the engine does with it. The state machine declares an event for each
/// (<see cref="PipelineStateMachine"/>), the saga's endpoint partitions and hands off each
/// (<see cref="BusFlowEndpointConfigurator"/>) and the decider applies each
/// (<see cref="PipelineDecider"/>), all from this list: adding a saga message is one entry here and
/// the engine's method for it.
/// </summary>
internal static class SagaMessageRegistry
{
    public static IReadOnlyList<SagaMessage> All { get; } =
    [
        new SagaMessage<StartPipeline>(m => m.PipelineId, (engine, m) => engine.Start(m), starts: true),
        new SagaMessage<CancelPipeline>(m => m.PipelineId, (engine, m) => engine.Cancel(m.Reason)),
        new SagaMessage<SubmitStepAction>(m => m.PipelineId, (engine, m) => engine.Answer(m.SuspendId, m.Payload)),
        new SagaMessage<ReportStepProgress>(m => m.PipelineId, (engine, m) => engine.Progress(m)),
        new SagaMessage<ReportStepSucceeded>(m => m.PipelineId, (engine, m) => engine.Succeeded(m.ExecutionId, m.Result)),
        new SagaMessage<ReportStepFaulted>(m => m.PipelineId, (engine, m) => engine.Faulted(m.ExecutionId, m.Error, m.Retryable)),
        new SagaMessage<ReportStepSuspended>(m => m.PipelineId, (engine, m) => engine.Suspended(m)),
        new SagaMessage<WakePipeline>(m => m.PipelineId, (engine, _) => engine.Wake()),
        new SagaMessage<ChildPipelineFinished>(m => m.PipelineId, (engine, m) => engine.ChildFinished(m)),
    ];

    private static readonly FrozenDictionary<Type, SagaMessage> ByType = All.ToFrozenDictionary(m => m.Type);

    /// <summary>The entry of <paramref name="message"/>'s type; a type the saga does not take is a bug of the caller.</summary>
    public static SagaMessage Of(object message) =>
        ByType.TryGetValue(message.GetType(), out var entry)
            ? entry
            : throw new ArgumentException($"{message.GetType().Name} is not a message the pipeline saga takes.", nameof(message));
}
