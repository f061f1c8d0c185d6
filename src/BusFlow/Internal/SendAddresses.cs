using System.Collections.Concurrent;
using RabbitMQ.Client;

namespace BusFlow.Internal;

/// <summary>
/// Where BusFlow sends its commands (the saga's queue, the workers' queues). As given, except with
/// quorum queues on RabbitMQ (<c>BusFlow:RabbitMq:QueueType</c> = <c>Quorum</c>): MassTransit's send
/// to <c>queue:name</c> declares the queue as a classic one, which RabbitMQ refuses
/// (PRECONDITION_FAILED) for a queue that exists as a quorum queue. So the destination queue, its
/// exchange and their binding are declared here first, as the receive endpoint declares them
/// (durable quorum queue, durable fanout exchange of the same name), once per queue and process,
/// and the message goes to the exchange: it waits in the queue even when no process consumes it
/// yet, as with <c>queue:</c>.
/// </summary>
internal sealed class SendAddresses(QuorumQueueDeclarations? quorum) : IBusFlowSendEndpoints
{
    /// <summary>Classic queues, the in-memory transport, or a bus BusFlow did not configure: addresses as they are.</summary>
    public static SendAddresses AsGiven { get; } = new(quorum: null);

    /// <summary>The send endpoint for <paramref name="destination"/> (see <see cref="ForAsync"/>).</summary>
    public async Task<MassTransit.ISendEndpoint> GetSendEndpointAsync(MassTransit.ISendEndpointProvider provider, Uri destination, CancellationToken cancellationToken) =>
        await provider.GetSendEndpoint(await ForAsync(destination, cancellationToken));

    /// <summary>The address to send to for <paramref name="destination"/>: itself, or its declared quorum queue's exchange.</summary>
    public ValueTask<Uri> ForAsync(Uri destination, CancellationToken cancellationToken) =>
        quorum is null || destination.Scheme != "queue"
            ? ValueTask.FromResult(destination)
            : quorum.ExchangeOfAsync(destination.AbsolutePath, cancellationToken);
}

/// <summary>
/// The quorum queues this process sends to, declared on a connection of its own (see
/// <see cref="SendAddresses"/>): each queue once per connection. A new connection (after the
/// broker or a node went away) declares again, so a queue deleted meanwhile is there again before
/// the next send; a queue deleted while the connection stays up is not (delete queues with every
/// process stopped, docs/operations.md).
/// </summary>
internal sealed class QuorumQueueDeclarations(RabbitMqOptions options) : IAsyncDisposable, IDisposable
{
    /// <summary>How long one declaration may take, connecting included, before the send fails (and is tried again by its caller).</summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<string, Uri> _declared = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lock = new(1, 1);
    private IConnection? _connection;

    /// <summary>The queue's exchange, once the queue, the exchange and the binding exist.</summary>
    public async ValueTask<Uri> ExchangeOfAsync(string queue, CancellationToken cancellationToken)
    {
        if (_connection is { IsOpen: true } && _declared.TryGetValue(queue, out var exchange))
        {
            return exchange;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(Timeout);
        await _lock.WaitAsync(timeout.Token);
        try
        {
            if (_connection is not { IsOpen: true })
            {
                if (_connection is not null)
                {
                    await _connection.DisposeAsync();
                }

                _declared.Clear();
                _connection = await Connect(options, timeout.Token);
            }

            if (_declared.TryGetValue(queue, out exchange))
            {
                return exchange;
            }

            await using var channel = await _connection.CreateChannelAsync(cancellationToken: timeout.Token);
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, QuorumQueues.Arguments, cancellationToken: timeout.Token);
            await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: timeout.Token);
            await channel.QueueBindAsync(queue, queue, routingKey: "", cancellationToken: timeout.Token);
            return _declared[queue] = new Uri("exchange:" + queue);
        }
        finally
        {
            _lock.Release();
        }
    }

    private static Task<IConnection> Connect(RabbitMqOptions options, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory
        {
            Port = options.Port,
            VirtualHost = options.VirtualHost,
            UserName = options.Username,
            Password = options.Password,
            ClientProvidedName = "busflow-quorum-declarations",
            // A lost connection is replaced at the next declaration, which declares again.
            AutomaticRecoveryEnabled = false,
        };
        return factory.CreateConnectionAsync(options.Nodes().Select(n => new AmqpTcpEndpoint(n.Host, n.Port)).ToList(), cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _connection, null) is { } connection)
        {
            await connection.DisposeAsync();
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _connection, null) is { } connection)
        {
            connection.Dispose();
        }
    }
}
