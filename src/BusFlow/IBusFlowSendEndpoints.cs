using MassTransit;

namespace BusFlow;

/// <summary>
/// The send endpoint for a queue BusFlow sends to (the saga's queue, a worker's queue), for a store
/// that sends its outbox's messages itself. With quorum queues on RabbitMQ the destination
/// queue is declared first and the message goes to its exchange; otherwise the address is used as it
/// is. Send BusFlow's commands through it rather than <see cref="ISendEndpointProvider"/> directly.
/// </summary>
public interface IBusFlowSendEndpoints
{
    /// <summary>The endpoint to send to <paramref name="destination"/> through <paramref name="provider"/>.</summary>
    Task<ISendEndpoint> GetSendEndpointAsync(ISendEndpointProvider provider, Uri destination, CancellationToken cancellationToken);
}
