using System.Diagnostics;

namespace BusFlow.Chaos;

/// <summary>
/// The RabbitMQ and PostgreSQL that tests/servers.sh started: a virtual host and a database of the
/// run's own (<see cref="BenchVirtualHost"/> and <see cref="BenchDatabase"/> of BusFlow.Testing, as the
/// benchmarks make them), and the commands that stop and start the servers themselves
/// (tests/rabbitmqctl.sh, tests/postgresctl.sh).
/// </summary>
public sealed class ChaosServers(RabbitMqVirtualHost virtualHost, BenchDatabase database) : IAsyncDisposable
{
    public string ConnectionString => database.ConnectionString;

    /// <summary>Creates the run's virtual host and database.</summary>
    public static async Task<ChaosServers> Create() => new(await BenchVirtualHost.Create(), await BenchDatabase.Create());

    /// <summary>
    /// The cluster's nodes (<c>host:port</c>) when the run is on tests/rabbitmq-cluster.sh's cluster
    /// (<c>BUSFLOW_RABBITMQ_NODES</c>); empty on tests/servers.sh's single broker.
    /// </summary>
    public static IReadOnlyList<string> ClusterNodes { get; } =
        Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQ_NODES")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? [];

    /// <summary>What points a BusFlow.Host process at the run's virtual host and database (and, on the cluster, every node, with quorum queues).</summary>
    public Dictionary<string, string?> HostSettings()
    {
        var settings = new Dictionary<string, string?>(virtualHost.BusFlowSettings())
        {
            ["BusFlow:Store:Provider"] = "Postgres",
            ["BusFlow:Store:ConnectionString"] = database.ConnectionString,
        };
        if (ClusterNodes.Count > 0)
        {
            settings["BusFlow:RabbitMq:QueueType"] = "Quorum";
            for (var i = 0; i < ClusterNodes.Count; i++)
            {
                settings[$"BusFlow:RabbitMq:ClusterNodes:{i}"] = ClusterNodes[i];
            }
        }

        return settings;
    }

    /// <summary>
    /// Stops the broker's application (every connection to it drops; queues and messages stay) and
    /// starts it after <paramref name="down"/>: on the cluster, node <paramref name="node"/>'s.
    /// </summary>
    public static async Task RestartRabbitMqAsync(int node, TimeSpan down)
    {
        if (ClusterNodes.Count > 0)
        {
            await RunAsync(Required("BUSFLOW_RABBITMQ_CLUSTER_CTL"), "stop-app", $"{node}");
            // Not cancelled by the run's end: a server stopped is always started again.
            await Task.Delay(down, CancellationToken.None);
            await RunAsync(Required("BUSFLOW_RABBITMQ_CLUSTER_CTL"), "start-app", $"{node}");
            return;
        }

        await RunAsync(Required("BUSFLOW_RABBITMQCTL"), "stop_app");
        // Not cancelled by the run's end: a server stopped is always started again.
        await Task.Delay(down, CancellationToken.None);
        await RunAsync(Required("BUSFLOW_RABBITMQCTL"), "start_app");
    }

    /// <summary>SIGKILLs cluster node <paramref name="node"/>'s Erlang VM and starts the node again after <paramref name="down"/>.</summary>
    public static async Task KillRabbitMqNodeAsync(int node, TimeSpan down)
    {
        await RunAsync(Required("BUSFLOW_RABBITMQ_CLUSTER_CTL"), "kill", $"{node}");
        // Not cancelled by the run's end: a server stopped is always started again.
        await Task.Delay(down, CancellationToken.None);
        await RunAsync(Required("BUSFLOW_RABBITMQ_CLUSTER_CTL"), "start-node", $"{node}");
    }

    /// <summary>PostgreSQL's immediate shutdown (no checkpoint: crash recovery at the next start), started again after <paramref name="down"/>.</summary>
    public static async Task RestartPostgresAsync(TimeSpan down)
    {
        await RunAsync(Required("BUSFLOW_POSTGRESCTL"), "stop-immediate");
        // Not cancelled by the run's end: a server stopped is always started again.
        await Task.Delay(down, CancellationToken.None);
        await RunAsync(Required("BUSFLOW_POSTGRESCTL"), "start");
    }

    private static async Task RunAsync(string command, params string[] arguments)
    {
        var argument = string.Join(' ', arguments);
        // Ahead of the load in the queue for the two cores: under it, each rabbitmqctl took 45-120 s
        // to boot its Erlang VM and reach the node at normal priority.
        using var process = Process.Start(new ProcessStartInfo("nice", ["-n", "-15", command, .. arguments]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var error = process.StandardError.ReadToEndAsync();
        var output = process.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{command} {argument} did not finish within 3 minutes");
        }

        await output;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{command} {argument} exited with {process.ExitCode}: {await error}");
        }
    }

    private static string Required(string name) => Environment.GetEnvironmentVariable(name)
        ?? throw new InvalidOperationException($"{name} is not set: run the chaos runner through tests/run.sh or tests/chaos.sh, which start the servers it needs.");

    public async ValueTask DisposeAsync()
    {
        // BUSFLOW_CHAOS_KEEP=1 keeps the run's database, to read what a broken check names.
        if (Environment.GetEnvironmentVariable("BUSFLOW_CHAOS_KEEP") == "1")
        {
            Console.WriteLine($"kept the run's database {database.Name} (BUSFLOW_CHAOS_KEEP=1)");
            return;
        }

        try
        {
            await virtualHost.DisposeAsync();
        }
        catch (HttpRequestException ex)
        {
            // The management API's node is down (a fault's repair cut off): the virtual host stays.
            Console.WriteLine($"could not delete the run's virtual host: {ex.Message}");
        }

        await database.DisposeAsync();
    }
}
