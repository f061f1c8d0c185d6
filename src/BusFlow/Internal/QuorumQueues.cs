using MassTransit;

namespace BusFlow.Internal;

/// <summary>
/// Declares every durable RabbitMQ receive endpoint configured after it as a quorum queue
/// (<c>BusFlow:RabbitMq:QueueType</c> = <c>Quorum</c>); temporary, auto-deleted or exclusive
/// queues cannot be quorum queues and stay classic.
/// </summary>
internal sealed class QuorumQueues : IEndpointConfigurationObserver
{
    public static QuorumQueues Instance { get; } = new();

    /// <summary>The arguments of a quorum queue's declaration.</summary>
    public static IDictionary<string, object?> Arguments { get; } = new Dictionary<string, object?> { ["x-queue-type"] = "quorum" };

    public void EndpointConfigured<T>(T configurator)
        where T : IReceiveEndpointConfigurator
    {
        if (configurator is IRabbitMqReceiveEndpointConfigurator rabbit
            && configurator is MassTransit.RabbitMqTransport.Configuration.IRabbitMqReceiveEndpointConfiguration { Settings: { Durable: true, AutoDelete: false, Exclusive: false } })
        {
            rabbit.SetQuorumQueue();
        }
    }
}
