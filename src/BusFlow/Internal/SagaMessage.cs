namespace BusFlow.Internal;

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
