using MassTransit;

namespace BusFlow.Internal;

/// <summary>
/// The recorder without a store: publishes events and sends commands through the consume context.
/// With the saga endpoint's in-memory outbox they leave only after the transition succeeded.
/// </summary>
internal sealed class BusDecisionRecorder(PipelineFollowUp followUp, SendAddresses addresses) : IPipelineDecisionRecorder
{
    public async Task RecordAsync(ConsumeContext context, PipelineState state, PipelineDecision decision)
    {
        foreach (var e in decision.Events)
        {
            await context.Publish(e, e.GetType());
        }

        foreach (var outgoing in decision.Messages())
        {
            if (outgoing.Destination is { } destination)
            {
                var endpoint = await addresses.GetSendEndpointAsync(context, destination, context.CancellationToken);
                await endpoint.Send(outgoing.Message, outgoing.Message.GetType());
            }
            else
            {
                await context.Publish(outgoing.Message, outgoing.Message.GetType());
            }
        }

        // The in-memory saga repository holds the instance's lock until this message is done, so a
        // wake-up scheduled now is decided after this transition.
        await followUp.AfterCommitAsync(state.CorrelationId, state.NextDeadline, decision.Events, context.CancellationToken);
    }
}
