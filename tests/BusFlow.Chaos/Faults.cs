using System.Diagnostics;

namespace BusFlow.Chaos;

/// <summary>A fault the runner injected: its kind, what it hit, and when it began and was repaired (seconds into the run).</summary>
public sealed record Fault(string Kind, string Target, double Start, double End);

/// <summary>
/// Injects faults on a schedule. The short profile cycles through every kind in turn; the long one
/// picks kinds at random. A process fault hits a process that is running and not paused.
/// </summary>
public sealed class FaultInjector(Topology topology, LoadDriver load, BusTap tap, Random random, Stopwatch clock, CancellationToken abort)
{
    /// <summary>The kinds of fault, the node kill only on a cluster (a single broker's loss stops everything until it is back, which the restart already covers).</summary>
    public static readonly string[] Kinds = ChaosServers.ClusterNodes.Count > 0
        ? ["kill", "pause", "rabbitmq-restart", "postgres-restart", "duplicates", "rabbitmq-node-kill"]
        : ["kill", "pause", "rabbitmq-restart", "postgres-restart", "duplicates"];
    private readonly SemaphoreSlim _server = new(1, 1);
    private readonly List<Task> _running = [];

    public List<Fault> Injected { get; } = [];

    /// <summary>Faults the runner could not inject or repair (a server that did not come back, a process that did not start): each breaks the run.</summary>
    public List<string> Failed { get; } = [];

    public async Task RunAsync(TimeSpan every, bool randomKinds, CancellationToken stop, IReadOnlyList<string>? only = null)
    {
        var kinds = only ?? Kinds;
        _skipWhenBusy = randomKinds;
        for (var n = 0; !stop.IsCancellationRequested; n++)
        {
            try
            {
                await Task.Delay(every, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            // A fault's repair (a restart until ready, a pause) may outlast the interval: the next one
            // does not wait for it, so faults overlap; two server restarts never do.
            _running.Add(InjectAsync(randomKinds ? kinds[Next(0, kinds.Count)] : kinds[n % kinds.Count]));
        }

        await Task.WhenAll(_running);
    }

    private async Task InjectAsync(string kind)
    {
        var start = clock.Elapsed.TotalSeconds;
        try
        {
            await InjectOnceAsync(kind);
        }
        catch (Exception ex)
        {
            lock (Failed)
            {
                Failed.Add($"{kind} at {start:0} s, failed at {clock.Elapsed.TotalSeconds:0} s: {ex.GetType().Name}: {ex.Message.Split('\n')[0]}");
            }
        }
    }

    private async Task InjectOnceAsync(string kind)
    {
        var start = clock.Elapsed.TotalSeconds;
        string target;
        Console.WriteLine($"{start,6:0.0} s  fault: {kind}");
        switch (kind)
        {
            case "kill":
                {
                    if (topology.PickAny(random) is not { } process)
                    {
                        return;
                    }

                    target = process.Name;
                    await process.RestartAsync(TimeSpan.FromMilliseconds(Next(500, 3000)), abort);
                    break;
                }

            case "pause":
                {
                    // Past the outbox lease (10 s), so another saga process takes the delivery over meanwhile.
                    if (topology.PickAny(random) is not { } process)
                    {
                        return;
                    }

                    target = process.Name;
                    process.Pause();
                    await Task.Delay(TimeSpan.FromSeconds(Next(11, 15)));
                    process.Continue();
                    break;
                }

            case "rabbitmq-restart":
                {
                    var node = NextNode();
                    target = ChaosServers.ClusterNodes.Count > 0 ? $"node {node}" : "broker";
                    if (await OneServerAtATimeAsync(() => ChaosServers.RestartRabbitMqAsync(node, TimeSpan.FromSeconds(3))) is not { } restarted)
                    {
                        return;
                    }

                    start = restarted;
                    break;
                }

            case "rabbitmq-node-kill":
                {
                    var node = NextNode();
                    target = $"node {node}";
                    if (await OneServerAtATimeAsync(() => ChaosServers.KillRabbitMqNodeAsync(node, TimeSpan.FromSeconds(Next(3, 8)))) is not { } killed)
                    {
                        return;
                    }

                    start = killed;
                    break;
                }

            case "postgres-restart":
                target = "database";
                if (await OneServerAtATimeAsync(() => ChaosServers.RestartPostgresAsync(TimeSpan.FromSeconds(2))) is not { } recovered)
                {
                    return;
                }

                start = recovered;
                break;
            default:
                {
                    // Both ends of the bus: starts the edges were asked for again (same keys), and
                    // messages the saga and the workers already got, delivered to them again.
                    var repeated = await tap.RepeatAsync(20, random);
                    target = $"10 starts sent again and {repeated} bus messages delivered again";
                    await load.RepeatStartsAsync(10, abort);
                    break;
                }

        }

        var fault = new Fault(kind, target, start, clock.Elapsed.TotalSeconds);
        Console.WriteLine($"{fault.End,6:0.0} s  repaired: {kind} of {target} after {fault.End - fault.Start:0.0} s");
        lock (Injected)
        {
            Injected.Add(fault);
        }
    }

    /// <summary>
    /// Runs a server restart once no other one runs; returns when it began (seconds into the run),
    /// or null when it was skipped. With kinds at random (the long profile) one due while another
    /// runs is skipped, not queued: server faults come faster than servers restart there, and
    /// queued ones ran on long after the load had stopped. In turn (the short profile) it waits, so
    /// that every kind happens.
    /// </summary>
    private async Task<double?> OneServerAtATimeAsync(Func<Task> restart)
    {
        if (!await _server.WaitAsync(_skipWhenBusy ? TimeSpan.Zero : Timeout.InfiniteTimeSpan))
        {
            Console.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s  skipped: another server fault is in progress");
            Interlocked.Increment(ref _skipped);
            return null;
        }

        try
        {
            var start = clock.Elapsed.TotalSeconds;
            await restart();
            return start;
        }
        finally
        {
            _server.Release();
        }
    }

    /// <summary>The cluster's nodes in turn, node 1 (where every process connects first) first; 1 on a single broker.</summary>
    private int NextNode() => (Interlocked.Increment(ref _nodeTurn) - 1) % Math.Max(1, ChaosServers.ClusterNodes.Count) + 1;

    private int _nodeTurn;
    private int _skipped;
    private bool _skipWhenBusy;

    /// <summary>Server faults not injected because another one was in progress.</summary>
    public int Skipped => Volatile.Read(ref _skipped);

    private int Next(int min, int max)
    {
        lock (random)
        {
            return random.Next(min, max);
        }
    }
}

/// <summary>The split topology: edge, saga and worker processes of BusFlow.Host on the run's broker and database.</summary>
public sealed class Topology(IReadOnlyList<RoleProcess> processes) : IAsyncDisposable
{
    public IReadOnlyList<RoleProcess> Processes { get; } = processes;

    public static async Task<Topology> StartAsync(ChaosServers servers, int edges, int sagas, int workers)
    {
        var settings = servers.HostSettings();
        var processes = new List<RoleProcess>();
        foreach (var (role, count) in new[] { ("saga", sagas), ("worker", workers), ("edge", edges) })
        {
            for (var i = 1; i <= count; i++)
            {
                // The first saga process applies the migrations; the others start after it.
                var own = new Dictionary<string, string?>(settings) { ["BusFlow:Store:ApplyMigrations"] = processes.Count == 0 ? "true" : "false" };
                var process = new RoleProcess($"{role}-{i}", role, own);
                await process.StartAsync(CancellationToken.None);
                processes.Add(process);
            }
        }

        return new Topology(processes);
    }

    /// <summary>A serving edge, at random; any edge when none serves (the request fails and is tried again).</summary>
    public RoleProcess Edge(Random random)
    {
        var edges = Processes.Where(p => p.Role == "edge").ToList();
        var serving = edges.Where(p => p.Serving).ToList();
        lock (random)
        {
            return serving.Count > 0 ? serving[random.Next(serving.Count)] : edges[random.Next(edges.Count)];
        }
    }

    /// <summary>A process that is ready and not paused, at random; null when none is.</summary>
    public RoleProcess? PickAny(Random random)
    {
        var serving = Processes.Where(p => p.Serving).ToList();
        lock (random)
        {
            return serving.Count == 0 ? null : serving[random.Next(serving.Count)];
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var process in Processes)
        {
            await process.DisposeAsync();
        }
    }
}
