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

/// <summary>One saga message of <see cref="SagaMessageRegistry"/>, to be visited with its type (<see cref="ISagaMessageVisitor"/>).</summary>
internal abstract class SagaMessage
{
    public abstract Type Type { get; }

    /// <summary>True for the message that creates a pipeline's saga; the others are discarded when there is none.</summary>
    public abstract bool Starts { get; }

    /// <summary>Hands <paramref name="message"/> to the engine's method for it.</summary>
    public abstract void Apply(PipelineEngine engine, object message);

    public abstract void Accept(ISagaMessageVisitor visitor);
}

/// <inheritdoc cref="SagaMessage"/>
internal sealed class SagaMessage<T>(Func<T, Guid> pipelineId, Action<PipelineEngine, T> apply, bool starts = false) : SagaMessage
    where T : class
{
    public override Type Type => typeof(T);

    public override bool Starts => starts;

    /// <summary>The pipeline the message is for: the saga's correlation id and its partition key.</summary>
    public Guid PipelineId(T message) => pipelineId(message);

    public override void Apply(PipelineEngine engine, object message) => apply(engine, (T)message);

    public override void Accept(ISagaMessageVisitor visitor) => visitor.Visit(this);
}

/// <summary>Does something with each saga message, knowing its type.</summary>
internal interface ISagaMessageVisitor
{
    void Visit<T>(SagaMessage<T> message)
        where T : class;
}
