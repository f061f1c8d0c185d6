using System.ComponentModel.DataAnnotations;

namespace BusFlow;

/// <summary>Which message transport BusFlow runs on.</summary>
public enum BusFlowTransport
{
    /// <summary>MassTransit's in-memory transport: one process, nothing to install (the embedded default).</summary>
    InMemory,

    /// <summary>RabbitMQ: several processes share pipelines, workers and events.</summary>
    RabbitMq,
}

/// <summary>Settings of the <c>BusFlow</c> configuration section.</summary>
public sealed class BusFlowOptions
{
    public const string Section = "BusFlow";

    /// <summary><c>BusFlow:Transport</c>: <c>InMemory</c> (default) or <c>RabbitMq</c>.</summary>
    public BusFlowTransport Transport { get; set; } = BusFlowTransport.InMemory;

    /// <summary>
    /// <c>BusFlow:DefinitionWait</c> (<c>hh:mm:ss</c>): how long a pipeline's message waits for a saga
    /// process that has the pipeline's definition version before the pipeline fails with
    /// <c>unknown_version</c>. Unset: <see cref="BusFlowBuilder.DefinitionWait"/> (5 minutes unless set in code).
    /// </summary>
    public TimeSpan? DefinitionWait { get; set; }

    /// <summary>
    /// <c>BusFlow:StartTimeout</c> (<c>hh:mm:ss</c>): a process whose start (the store's check, the
    /// bus connecting and declaring its queues; not the time migrations take) has not finished by
    /// then ends itself with an error, for its supervisor to start it again, instead of staying up
    /// and never ready. Unset (or zero): never. BusFlow.Host sets 5 minutes in its appsettings.json;
    /// an application of its own opts in, since the process ends even if it meant to survive a failed start.
    /// </summary>
    public TimeSpan? StartTimeout { get; set; }

    /// <summary><c>BusFlow:RabbitMq</c>: where the broker is, when <see cref="Transport"/> is RabbitMq.</summary>
    public RabbitMqOptions RabbitMq { get; set; } = new();
}

/// <summary>The transport this process's bus runs on, when BusFlow chose it from configuration.</summary>
public sealed record BusFlowTransportInfo(BusFlowTransport Transport)
{
    /// <summary>True when messages in flight do not survive the process (the in-memory transport).</summary>
    public bool LosesMessagesOnRestart => Transport == BusFlowTransport.InMemory;
}

/// <summary>Settings of the <c>BusFlow:RabbitMq</c> section.</summary>
public sealed class RabbitMqOptions
{
    [Required]
    public string Host { get; set; } = "localhost";

    [Range(1, 65535)]
    public int Port { get; set; } = 5672;

    public string VirtualHost { get; set; } = "/";

    public string Username { get; set; } = "guest";

    public string Password { get; set; } = "guest";

    /// <summary>
    /// <c>BusFlow:RabbitMq:ClusterNodes</c>: the nodes of a RabbitMQ cluster as <c>host:port</c> (or
    /// <c>host</c>, on <see cref="Port"/>), tried in turn when connecting and reconnecting, so that a
    /// node's loss moves the process to another. Empty: <see cref="Host"/> alone.
    /// </summary>
    public List<string> ClusterNodes { get; set; } = [];

    /// <summary>Where to connect: each of <see cref="ClusterNodes"/>, or <see cref="Host"/> and <see cref="Port"/>.</summary>
    public IReadOnlyList<(string Host, int Port)> Nodes() =>
        ClusterNodes.Count == 0
            ? [(Host, Port)]
            : [.. ClusterNodes.Select(n => n.LastIndexOf(':') is var colon and > 0 && int.TryParse(n[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var port) ? (n[..colon], port) : (n, Port))];

    /// <summary>
    /// The type of the durable queues the bus declares (BusFlow's saga and worker queues and the
    /// application's consumers configured through AddBusFlow): <see cref="RabbitMqQueueType.Quorum"/>
    /// replicates them over a RabbitMQ cluster's nodes, so that a node's loss keeps them and their
    /// messages. Temporary queues (the edge's, a worker process's cancel queue) stay classic. A queue
    /// keeps the type it was declared with: switching needs new queues (see docs/operations.md).
    /// </summary>
    public RabbitMqQueueType QueueType { get; set; } = RabbitMqQueueType.Classic;
}

/// <summary>The RabbitMQ queue type of BusFlow's durable queues (<c>BusFlow:RabbitMq:QueueType</c>).</summary>
public enum RabbitMqQueueType
{
    /// <summary>RabbitMQ's default: a queue on one node.</summary>
    Classic,

    /// <summary>A queue replicated over the cluster with Raft (RabbitMQ 3.8 or later).</summary>
    Quorum,
}
