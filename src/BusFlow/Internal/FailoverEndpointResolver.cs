using MassTransit;
using RabbitMQ.Client;

namespace BusFlow.Internal;

/// <summary>
/// The nodes of <c>BusFlow:RabbitMq:ClusterNodes</c> for one connection attempt: every node, starting
/// at the one after where the last attempt started (the first attempt at a random node, so that
/// processes spread over the cluster). The RabbitMQ client opens the TCP (and TLS) connection to each
/// in this order and keeps the first that it reaches, so a node that refuses connections costs a
/// refused connect within the attempt, and one that does not answer at all costs the connection
/// timeout. MassTransit's own cluster resolver (<c>UseCluster</c>) offers one node per attempt, so a
/// process whose turn fell on a node that was down waited for the transport's retry back-off
/// (seconds, growing) before it tried the next: found by the chaos runner, where processes that
/// started during a node's restart became ready tens of seconds after the node was back. A node
/// that accepts the connection and then fails the AMQP handshake fails the attempt; the next one
/// starts at the next node.
/// </summary>
internal sealed class FailoverEndpointResolver(IReadOnlyList<(string Host, int Port)> nodes) : IEndpointResolver
{
    private int _start = Random.Shared.Next(nodes.Count) - 1;

    /// <summary>The endpoint the client made from the configured host: its TLS options and message size limit apply to every node.</summary>
    private AmqpTcpEndpoint? _template;

    public IEnumerable<AmqpTcpEndpoint> All()
    {
        var start = Interlocked.Increment(ref _start);
        var template = _template;
        for (var i = 0; i < nodes.Count; i++)
        {
            var (host, port) = nodes[(int)((uint)(start + i) % (uint)nodes.Count)];
            yield return template is null
                ? new AmqpTcpEndpoint(host, port)
                : new AmqpTcpEndpoint(host, port, template.Ssl, template.MaxInboundMessageBodySize);
        }
    }

    private FailoverEndpointResolver For(IEnumerable<AmqpTcpEndpoint> given)
    {
        _template = given.FirstOrDefault();
        return this;
    }

    /// <summary>
    /// Connects through every node of the cluster, in turn per attempt. MassTransit hands the client
    /// its one host name when no <c>UseCluster</c> is configured; the client turns host names into
    /// endpoints through the factory's <see cref="ConnectionFactory.EndpointResolverFactory"/>, which
    /// is set here, before each connection attempt. MassTransit names the connection after the
    /// configured host (<c>BusFlow:RabbitMq:Host</c>) in its log lines, whichever node it reached.
    /// This takes the configurator's one connection-factory refresh callback.
    /// </summary>
    public static void Install(IRabbitMqHostConfigurator host, IReadOnlyList<(string Host, int Port)> nodes)
    {
        var resolver = new FailoverEndpointResolver(nodes);
        host.OnRefreshConnectionFactory = factory =>
        {
            factory.EndpointResolverFactory = resolver.For;
            return Task.CompletedTask;
        };
    }
}
