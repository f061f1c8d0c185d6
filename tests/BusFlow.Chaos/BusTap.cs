using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace BusFlow.Chaos;

/// <summary>
/// The duplicated-delivery fault: a queue of the runner's own bound to the saga's exchange and every
/// worker's (each a fanout exchange in front of its queue) gets a copy of every message sent to
/// them; the last <see cref="Kept"/> are kept, and <see cref="RepeatAsync"/> publishes some of
/// them again to the exchange they came through, bytes and properties (message id included)
/// unchanged, as a broker or a publisher retry would deliver them twice. The checks then show
/// whether a step ran twice, an effect happened twice or an event was recorded twice.
/// </summary>
public sealed class BusTap : IAsyncDisposable
{
    private const int Kept = 500;
    private readonly Queue<(string Exchange, ReadOnlyMemory<byte> Body, BasicProperties Properties)> _recent = new();
    private readonly IConnection _connection;
    private readonly IChannel _channel;
    private readonly Dictionary<string, string?> _settings;

    private BusTap(IConnection connection, IChannel channel, Dictionary<string, string?> settings)
    {
        _connection = connection;
        _channel = channel;
        _settings = settings;
    }

    /// <summary>Taps the virtual host's BusFlow exchanges as they are now (after the topology started).</summary>
    public static async Task<BusTap> StartAsync(Dictionary<string, string?> settings)
    {
        // Where the processes connect, read as BusFlow reads it.
        var rabbit = new RabbitMqOptions
        {
            Host = settings["BusFlow:RabbitMq:Host"]!,
            Port = int.Parse(settings["BusFlow:RabbitMq:Port"]!, System.Globalization.CultureInfo.InvariantCulture),
            ClusterNodes = [.. ChaosServers.ClusterNodes],
        };
        var factory = new ConnectionFactory
        {
            VirtualHost = settings["BusFlow:RabbitMq:VirtualHost"]!,
            UserName = settings["BusFlow:RabbitMq:Username"]!,
            Password = settings["BusFlow:RabbitMq:Password"]!,
            AutomaticRecoveryEnabled = true,
            TopologyRecoveryEnabled = true,
            ClientProvidedName = "chaos-tap",
        };
        var connection = await factory.CreateConnectionAsync([.. rabbit.Nodes().Select(n => new AmqpTcpEndpoint(n.Host, n.Port))]);
        var channel = await connection.CreateChannelAsync();
        var tap = new BusTap(connection, channel, settings);
        // Auto-deleted with the runner's connection; re-declared with its bindings when the
        // connection recovers after a node's loss.
        var queue = (await channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true)).QueueName;
        foreach (var exchange in (await ListAsync(settings, "exchanges")).Where(name => name == "busflow-pipeline" || (name.StartsWith("busflow-step-", StringComparison.Ordinal) && !IsErrorOrSkipped(name))))
        {
            await channel.QueueBindAsync(queue, exchange, routingKey: "");
        }

        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, delivery) =>
        {
            lock (tap._recent)
            {
                tap._recent.Enqueue((delivery.Exchange, delivery.Body.ToArray(), new BasicProperties(delivery.BasicProperties)));
                while (tap._recent.Count > Kept)
                {
                    tap._recent.Dequeue();
                }
            }

            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue, autoAck: true, consumer);
        return tap;
    }

    /// <summary>Publishes <paramref name="count"/> of the kept messages, picked at random, again; returns how many it could.</summary>
    public async Task<int> RepeatAsync(int count, Random random)
    {
        List<(string Exchange, ReadOnlyMemory<byte> Body, BasicProperties Properties)> picked;
        lock (_recent)
        {
            lock (random)
            {
                picked = [.. _recent.OrderBy(_ => random.Next()).Take(count)];
            }
        }

        foreach (var (exchange, body, properties) in picked)
        {
            // The broker may be restarting (a server fault overlaps this one): the connection
            // recovers by itself, so try again for a while.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await _channel.BasicPublishAsync(exchange, routingKey: "", mandatory: false, properties, body);
                    break;
                }
                catch (Exception ex) when (ex is RabbitMQ.Client.Exceptions.AlreadyClosedException or RabbitMQ.Client.Exceptions.OperationInterruptedException && attempt < 120)
                {
                    await Task.Delay(TimeSpan.FromSeconds(1));
                }
            }
        }

        return picked.Count;
    }

    /// <summary>
    /// The messages in the run's error queues (<c>*_error</c>), by queue: MassTransit moves a message
    /// there when its consumer failed for good, and no process takes it again; for BusFlow's
    /// messages that is a pipeline that never ends (found by the chaos suite: a process whose start
    /// failed after its bus started moved its in-flight step commands there).
    /// </summary>
    public async Task<List<string>> DeadLetteredAsync()
    {
        var found = new List<string>();
        foreach (var queue in (await ListAsync(_settings, "queues")).Where(name => name.EndsWith("_error", StringComparison.Ordinal)))
        {
            // The broker's own count (the management API's lags behind after a node's restart).
            var declared = await _channel.QueueDeclarePassiveAsync(queue);
            if (declared.MessageCount > 0)
            {
                found.Add($"{queue}: {declared.MessageCount} messages");
            }
        }

        return found;
    }

    private static bool IsErrorOrSkipped(string name) => name.EndsWith("_error", StringComparison.Ordinal) || name.EndsWith("_skipped", StringComparison.Ordinal);

    /// <summary>The names of the virtual host's exchanges or queues (<paramref name="kind"/>), from the management API.</summary>
    private static async Task<List<string>> ListAsync(Dictionary<string, string?> settings, string kind)
    {
        var port = Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQ_MANAGEMENT_PORT") ?? "15672";
        var host = ChaosServers.ClusterNodes.Count > 0 ? ChaosServers.ClusterNodes[0].Split(':')[0] : settings["BusFlow:RabbitMq:Host"];
        using var http = new HttpClient { BaseAddress = new Uri($"http://{host}:{port}/api/") };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{settings["BusFlow:RabbitMq:Username"]}:{settings["BusFlow:RabbitMq:Password"]}")));
        using var listed = JsonDocument.Parse(await http.GetStringAsync(new Uri($"{kind}/{Uri.EscapeDataString(settings["BusFlow:RabbitMq:VirtualHost"]!)}", UriKind.Relative)));
        return [.. listed.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()!)];
    }

    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
