using MassTransit;

namespace BusFlow.Internal;

/// <summary>
/// Applies one message to a pipeline through <see cref="PipelineDecider"/> and hands what it decided
/// to the <see cref="IPipelineDecisionRecorder"/>, which makes it durable and delivers it.
/// </summary>
internal sealed class DecideActivity<TMessage>(PipelineDecider decider, IPipelineDecisionRecorder recorder) : IStateMachineActivity<PipelineState, TMessage>
    where TMessage : class
{
    public async Task Execute(BehaviorContext<PipelineState, TMessage> context, IBehavior<PipelineState, TMessage> next)
    {
        var decision = decider.Decide(context.Saga, context.Message, waitedLongEnough: context.TryGetPayload<DefinitionWaitOver>(out _));
        await recorder.RecordAsync(context, context.Saga, decision);
        await next.Execute(context);
    }

    public void Probe(ProbeContext context) => context.CreateScope("busflow-decide");

    public void Accept(StateMachineVisitor visitor) => visitor.Visit(this);

    public Task Faulted<TException>(BehaviorExceptionContext<PipelineState, TMessage, TException> context, IBehavior<PipelineState, TMessage> next)
        where TException : Exception => next.Faulted(context);
}
