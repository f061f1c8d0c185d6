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
}
