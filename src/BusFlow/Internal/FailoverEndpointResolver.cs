using MassTransit;
using RabbitMQ.Client;

namespace BusFlow.Internal;

/// <summary>
/// The nodes of <c>BusFlow:RabbitMq:ClusterNodes</c> for one connection attempt: every node, starting
/// at the one after where the last attempt started. The RabbitMQ client tries them in this order and
/// keeps the first that answers, so a node that is down costs one refused connection within the
/// attempt. MassTransit's own cluster resolver (<c>UseCluster</c>) offers one node per attempt, so a
/// process whose turn fell on a node that was down waited for the transport's retry back-off
/// (seconds, growing) before it tried the next: found by the chaos runner, where processes that
/// started during a node's restart became ready tens of seconds after the node was back.
/// </summary>
internal sealed class FailoverEndpointResolver(IReadOnlyList<(string Host, int Port)> nodes) : IEndpointResolver
{
    private int _start = -1;

    public IEnumerable<AmqpTcpEndpoint> All()
    {
        var start = Interlocked.Increment(ref _start);
        for (var i = 0; i < nodes.Count; i++)
        {
            var (host, port) = nodes[(int)((uint)(start + i) % (uint)nodes.Count)];
            yield return new AmqpTcpEndpoint(host, port);
        }
    }

    /// <summary>
    /// Connects through every node of the cluster, in turn per attempt. MassTransit hands the client
    /// its one host name when no <c>UseCluster</c> is configured; the client turns host names into
    /// endpoints through the factory's <see cref="ConnectionFactory.EndpointResolverFactory"/>, which
    /// is set here, before each connection attempt.
    /// </summary>
    public static void Install(IRabbitMqHostConfigurator host, IReadOnlyList<(string Host, int Port)> nodes)
    {
        var resolver = new FailoverEndpointResolver(nodes);
        host.OnRefreshConnectionFactory = factory =>
        {
            factory.EndpointResolverFactory = _ => resolver;
            return Task.CompletedTask;
        };
    }
}
