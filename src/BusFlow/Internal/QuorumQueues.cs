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

    /// <summary>
    /// An error or skipped queue as a quorum queue when it is durable: one of a temporary endpoint
    /// (an edge's feed, a worker process's cancel queue) copies its queue's auto-delete, and
    /// RabbitMQ refuses a quorum queue that is not durable or is auto-deleted.
    /// </summary>
    public static void IfDurable(IRabbitMqQueueBindingConfigurator queue)
    {
        if (queue is MassTransit.RabbitMqTransport.EntitySettings { Durable: true, AutoDelete: false })
        {
            queue.SetQuorumQueue();
        }
    }

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
