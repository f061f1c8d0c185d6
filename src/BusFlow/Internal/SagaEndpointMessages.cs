using MassTransit;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// The saga endpoint's pipe for each saga message (<see cref="SagaMessageRegistry"/>): a message of a
/// pipeline whose definition version this process lacks goes to one that has it
/// (<see cref="DefinitionHandOff{TMessage}"/>); then one pipeline's messages are decided one at a
/// time, in arrival order (partitioned by pipeline id).
/// </summary>
internal sealed class SagaEndpointMessages(
    ISagaConfigurator<PipelineState> saga,
    IPartitioner partitioner,
    BusFlowRoles roles,
    TimeProvider time,
    SendAddresses addresses,
    ILogger logger) : ISagaMessageVisitor
{
    public void Visit<T>(SagaMessage<T> message)
        where T : class =>
        saga.Message<T>(m =>
        {
            m.UseFilter(new DefinitionHandOff<T>(roles, time, addresses, logger));
            m.UsePartitioner(partitioner, c => message.PipelineId(c.Message));
        });
}
