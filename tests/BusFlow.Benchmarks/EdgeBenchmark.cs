using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace BusFlow.Benchmarks;

/// <summary>One system's figures in one repetition of the relay measurement.</summary>
/// <param name="MessagesPerSecond">Burst: deliveries (events x clients) per second from the burst's start to the last receipt.</param>
/// <param name="BurstSeconds">Burst: seconds from its start to the last receipt.</param>
/// <param name="ServerCores">Burst: the server process's CPU in cores (2 = the whole machine).</param>
/// <param name="ClientCores">Burst: the driver's (clients') CPU in cores.</param>
/// <param name="OtherCores">Burst and paced: CPU used by everything but the server and this process (other jobs on the machine), in cores.</param>
/// <param name="ServerMicrosPerMessage">Burst: server CPU per delivered message, in microseconds.</param>
/// <param name="P50">Paced: median latency from when the event was due to each receipt, ms.</param>
/// <param name="P99">Paced: 99th percentile of the same, ms.</param>
/// <param name="Max">Paced: the largest, ms.</param>
/// <param name="RelayP50">Paced: median latency of the relay alone, ms: BusFlow from the edge's bus consumer receiving the event, SignalR from the SendAsync call, to each receipt.</param>
/// <param name="RelayP99">Paced: its 99th percentile, ms.</param>
/// <param name="HandedP99">Paced: 99th percentile over events of how late each was handed over (BusFlow: its row committed; SignalR: SendAsync called), ms.</param>
/// <param name="HandedOver100">Paced: events handed over more than 100 ms late.</param>
/// <param name="AtEdgeP99">BusFlow, paced: 99th percentile over events of the time from due to the edge's bus consumer receiving it (commit and outbox), ms.</param>
public sealed record EdgeRun(
    double MessagesPerSecond,
    double BurstSeconds,
    double ServerCores,
    double ClientCores,
    double OtherCores,
    double ServerMicrosPerMessage,
    double P50,
    double P99,
    double Max,
    double RelayP50,
    double RelayP99,
    double HandedP99,
    int HandedOver100,
    double? AtEdgeP99);

/// <summary>Idle connections on a fresh server: memory, and one event broadcast to all of them.</summary>
public sealed record IdleRun(
    int Connections,
    MemoryFigures Before,
    MemoryFigures After,
    double ConnectSeconds,
    double? FirstMs,
    double? LastMs,
    double? RelayFirstMs,
    double? RelayLastMs,
    double? SpanMs,
    double? ServerMicrosPerDelivery)
{
    public double GcBytesPerConnection => (After.GcHeapBytes - Before.GcHeapBytes) / (double)Connections;

    public double ResidentBytesPerConnection => (After.ResidentBytes - Before.ResidentBytes) / (double)Connections;
}

/// <summary>
/// The <c>edge</c> scenario: BusFlow's web edge relaying pipeline events to WebSocket subscribers,
/// beside an ASP.NET Core SignalR hub broadcasting the same JSON, each server in its own process
/// on a real Kestrel on 127.0.0.1, with real clients in this process. See docs/performance.md.
/// </summary>
public static class EdgeBenchmark
{
    private static readonly string[] Systems = [EdgeBenchServer.BusFlow, EdgeBenchServer.SignalR];

    public static async Task Run(BenchSettings settings)
    {
        var total = Stopwatch.StartNew();
        Console.WriteLine("BusFlow web edge vs ASP.NET Core SignalR");
        Console.WriteLine(Invariant($"  machine: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, .NET {Environment.Version}, open files limit {OpenFilesLimit()}, load average before start: {LoadAverage()}"));
        Console.WriteLine(Invariant($"  relay: {settings.EdgeClients} clients per system; burst of {settings.EdgeBurst} events; paced {settings.EdgePacedEvents} events at {settings.EdgeRate}/s; events round robin over {settings.EdgePipelines} pipelines; {settings.Repetitions} repetitions after a warm-up"));
        Console.WriteLine(Invariant($"  idle: {settings.EdgeIdleClients} connections per system on a fresh server, then {settings.EdgeBroadcasts} single-event broadcasts"));

        var results = Systems.ToDictionary(s => s, _ => new List<EdgeRun>());
        if (settings.EdgeClients > 0)
        {
            await Relay(settings, results);
        }

        var idle = new Dictionary<string, IdleRun>();
        if (settings.EdgeIdleClients > 0)
        {
            foreach (var system in Systems.Append(EdgeBenchServer.Floor))
            {
                idle[system] = await Idle(settings, system);
            }
        }

        Report(settings, results, idle);
        Console.WriteLine(Invariant($"Total time {total.Elapsed.TotalSeconds:0} s; load average at the end: {LoadAverage()}"));
    }

    private static async Task Relay(BenchSettings settings, Dictionary<string, List<EdgeRun>> results)
    {
        var targets = Systems.ToDictionary(s => s, _ => new ReceiptTarget());
        var servers = new Dictionary<string, EdgeServerProcess>();
        var swarms = new Dictionary<string, IClientSwarm>();
        try
        {
            foreach (var system in Systems)
            {
                var server = await EdgeServerProcess.StartAsync(system);
                servers[system] = server;
                var connect = Stopwatch.StartNew();
                swarms[system] = await Connect(server, settings.EdgeClients, targets[system]);
                await server.WaitForSubscribersAsync(settings.EdgeClients, TimeSpan.FromSeconds(60));
                Console.WriteLine(Invariant($"  {system}: server pid {server.ProcessId} at {server.BaseUri}, {settings.EdgeClients} clients connected and subscribed in {connect.Elapsed.TotalSeconds:0.0} s"));
            }

            var sample = await servers[EdgeBenchServer.SignalR].PostAsync<PreparedEvents>("bench/prepare?events=1&pipelines=1");
            Console.WriteLine(Invariant($"  events: StepProgress, {sample.PayloadBytes} bytes of JSON each (as the edge sends it)"));

            // Repetition 0 is a full-size warm-up (JIT, pools, buffers), not counted.
            for (var rep = 0; rep <= settings.Repetitions; rep++)
            {
                var label = rep == 0 ? "warm-up" : Invariant($"rep {rep}");
                foreach (var system in Systems)
                {
                    var run = await Measure(settings, servers[system], targets[system]);
                    if (rep > 0)
                    {
                        results[system].Add(run);
                    }

                    Console.WriteLine(Invariant(
                        $"  {label,-7} {system,-7} burst {run.MessagesPerSecond,9:N0} msg/s ({run.BurstSeconds:0.00} s; cpu server {run.ServerCores:0.00}, clients {run.ClientCores:0.00}, other jobs {run.OtherCores:0.00} cores; server {run.ServerMicrosPerMessage:0.0} us cpu/msg)  paced p50 {run.P50:0.0} ms p99 {run.P99:0.0} ms max {run.Max:0.0} ms; handed over p99 {run.HandedP99:0.0} ms late ({run.HandedOver100} over 100 ms){(run.AtEdgeP99 is { } atEdge ? Invariant($"; at the edge's consumer p99 {atEdge:0.0} ms after due") : "")}; relay p50 {run.RelayP50:0.0} p99 {run.RelayP99:0.0} ms"));
                }
            }
        }
        finally
        {
            foreach (var swarm in swarms.Values)
            {
                await swarm.DisposeAsync();
            }

            foreach (var server in servers.Values)
            {
                await server.DisposeAsync();
            }
        }
    }

    private static async Task<IClientSwarm> Connect(EdgeServerProcess server, int count, ReceiptTarget target, int firstClient = 0) =>
        server.Kind != EdgeBenchServer.SignalR
            ? await EdgeSocketSwarm.ConnectAsync(server.ClientUri, count, target, firstClient)
            : await HubSwarm.ConnectAsync(server.ClientUri, count, target, firstClient);

    /// <summary>One burst (throughput) and one paced stream (latency) through one server to its clients.</summary>
    private static async Task<EdgeRun> Measure(BenchSettings settings, EdgeServerProcess server, ReceiptTarget target)
    {
        var clients = settings.EdgeClients;
        var timeout = TimeSpan.FromSeconds(180);

        // Burst: every event handed over as fast as the server side takes them.
        var prepared = await server.PostAsync<PreparedEvents>(Invariant($"bench/prepare?events={settings.EdgeBurst}&pipelines={settings.EdgePipelines}"));
        var board = new ReceiptBoard(prepared, clients);
        target.Board = board;
        var serverCpu = server.CpuSeconds();
        var clientCpu = ProcessCpu.Seconds(Environment.ProcessId);
        var machine = ProcessCpu.Machine();
        var wall = Stopwatch.StartNew();
        var start = await server.PostAsync<long>("bench/burst");
        await board.WaitAsync(timeout, $"{server.Kind} burst");
        var seconds = wall.Elapsed.TotalSeconds;
        var serverUsed = server.CpuSeconds() - serverCpu;
        var clientUsed = ProcessCpu.Seconds(Environment.ProcessId) - clientCpu;
        var last = board.At.Max();
        var burstSeconds = Stopwatch.GetElapsedTime(start, last).TotalSeconds;
        var delivered = board.Count;

        // Paced: event k due at start + k / rate; latency from when it was due.
        prepared = await server.PostAsync<PreparedEvents>(Invariant($"bench/prepare?events={settings.EdgePacedEvents}&pipelines={settings.EdgePipelines}"));
        board = new ReceiptBoard(prepared, clients);
        target.Board = board;
        await server.PostAsync<long>(Invariant($"bench/paced?rate={settings.EdgeRate}"));
        await board.WaitAsync(timeout, $"{server.Kind} paced");
        target.Board = null;
        var machineBusy = ProcessCpu.Machine() - machine;
        var otherCores = Math.Max(0, (machineBusy - (server.CpuSeconds() - serverCpu) - (ProcessCpu.Seconds(Environment.ProcessId) - clientCpu)) / wall.Elapsed.TotalSeconds);
        var handoffs = await server.GetAsync<Handoffs>("bench/handoffs");
        var latencies = Latencies(board, handoffs.Scheduled);
        // The relay alone: BusFlow from its edge's bus consumer, SignalR from the SendAsync call.
        var relay = Latencies(board, handoffs.AtEdge ?? handoffs.Handed);
        var late = Stage(handoffs.Scheduled, handoffs.Handed);
        return new EdgeRun(
            delivered / burstSeconds,
            burstSeconds,
            serverUsed / seconds,
            clientUsed / seconds,
            otherCores,
            serverUsed * 1e6 / delivered,
            Percentile(latencies, 0.50),
            Percentile(latencies, 0.99),
            latencies[^1],
            Percentile(relay, 0.50),
            Percentile(relay, 0.99),
            Percentile(late, 0.99),
            late.Count(l => l > 100),
            handoffs.AtEdge is null ? null : Percentile(Stage(handoffs.Scheduled, handoffs.AtEdge), 0.99));
    }

    /// <summary>Per event, ms from one instant to another, sorted.</summary>
    private static double[] Stage(long[] from, long[] to)
    {
        var result = from.Zip(to, (f, t) => (t - f) * 1000.0 / Stopwatch.Frequency).ToArray();
        Array.Sort(result);
        return result;
    }

    /// <summary>Idle connections on a fresh server process: memory before and after, then single-event broadcasts to all of them.</summary>
    private static async Task<IdleRun> Idle(BenchSettings settings, string system)
    {
        var count = settings.EdgeIdleClients;
        await using var server = await EdgeServerProcess.StartAsync(system);
        var target = new ReceiptTarget();

        var relays = system != EdgeBenchServer.Floor;

        // Warm-up: connect, deliver a few events, disconnect, so that first-use costs are not counted per connection.
        await using (var warm = await Connect(server, 50, target))
        {
            await server.WaitForSubscribersAsync(50, TimeSpan.FromSeconds(60));
            if (relays)
            {
                var prepared = await server.PostAsync<PreparedEvents>("bench/prepare?events=20&pipelines=1");
                var board = new ReceiptBoard(prepared, 50);
                target.Board = board;
                await server.PostAsync<long>("bench/paced?rate=100");
                await board.WaitAsync(TimeSpan.FromSeconds(60), $"{system} idle warm-up");
            }
        }

        await server.WaitForSubscribersAsync(0, TimeSpan.FromSeconds(60));
        await Task.Delay(1000);
        var before = await server.GetAsync<MemoryFigures>("bench/memory");
        var connect = Stopwatch.StartNew();
        await using var swarm = await Connect(server, count, target);
        await server.WaitForSubscribersAsync(count, TimeSpan.FromSeconds(120));
        var connectSeconds = connect.Elapsed.TotalSeconds;
        await Task.Delay(3000);
        var after = await server.GetAsync<MemoryFigures>("bench/memory");
        if (settings.EdgeIdleHold > 0)
        {
            Console.WriteLine(Invariant($"  idle    {system,-7} holding {count} connections for {settings.EdgeIdleHold} s: server pid {server.ProcessId}"));
            await Task.Delay(TimeSpan.FromSeconds(settings.EdgeIdleHold));
        }

        Console.WriteLine(Invariant($"  idle    {system,-7} {count} connections in {connectSeconds:0.0} s; GC heap {Mib(before.GcHeapBytes)} -> {Mib(after.GcHeapBytes)} MiB, RSS {Mib(before.ResidentBytes)} -> {Mib(after.ResidentBytes)} MiB, threads {before.Threads} -> {after.Threads}"));

        var firsts = new List<double>();
        var lasts = new List<double>();
        var relayFirsts = new List<double>();
        var relayLasts = new List<double>();
        var spans = new List<double>();
        var cpu = new List<double>();
        for (var b = 0; relays && b < settings.EdgeBroadcasts; b++)
        {
            var prepared = await server.PostAsync<PreparedEvents>("bench/prepare?events=1&pipelines=1");
            var board = new ReceiptBoard(prepared, count);
            target.Board = board;
            var serverCpu = server.CpuSeconds();
            await server.PostAsync<long>("bench/paced?rate=1");
            await board.WaitAsync(TimeSpan.FromSeconds(120), $"{system} broadcast to {count}");
            cpu.Add((server.CpuSeconds() - serverCpu) * 1e6 / count);
            target.Board = null;
            var handoffs = await server.GetAsync<Handoffs>("bench/handoffs");
            var first = board.At.Min();
            var last = board.At.Max();
            firsts.Add(Stopwatch.GetElapsedTime(handoffs.Scheduled[0], first).TotalMilliseconds);
            lasts.Add(Stopwatch.GetElapsedTime(handoffs.Scheduled[0], last).TotalMilliseconds);
            spans.Add(Stopwatch.GetElapsedTime(first, last).TotalMilliseconds);
            if (handoffs.AtEdge is { } atEdge)
            {
                relayFirsts.Add(Stopwatch.GetElapsedTime(atEdge[0], first).TotalMilliseconds);
                relayLasts.Add(Stopwatch.GetElapsedTime(atEdge[0], last).TotalMilliseconds);
            }

            Console.WriteLine(Invariant($"  idle    {system,-7} broadcast {b + 1}: first receipt {firsts[^1]:0.0} ms, last {lasts[^1]:0.0} ms after hand-off, first to last {spans[^1]:0.0} ms, server cpu {cpu[^1]:0.0} us per delivery{(handoffs.AtEdge is null ? "" : Invariant($" ({relayFirsts[^1]:0.0} / {relayLasts[^1]:0.0} ms after the edge's consumer got it)"))}"));
            await Task.Delay(500);
        }

        return new IdleRun(count, before, after, connectSeconds, firsts.Count > 0 ? Median(firsts) : null, lasts.Count > 0 ? Median(lasts) : null, relayFirsts.Count > 0 ? Median(relayFirsts) : null, relayLasts.Count > 0 ? Median(relayLasts) : null, spans.Count > 0 ? Median(spans) : null, cpu.Count > 0 ? Median(cpu) : null);
    }

    private static void Report(BenchSettings settings, Dictionary<string, List<EdgeRun>> results, Dictionary<string, IdleRun> idle)
    {
        Console.WriteLine();
        if (results.Values.All(r => r.Count > 0))
        {
            Console.WriteLine(Invariant($"Medians of {settings.Repetitions} repetitions, {settings.EdgeClients} clients each. Burst: {settings.EdgeBurst} events handed over at once, deliveries (events x clients) per second to the last receipt."));
            Console.WriteLine(Invariant($"Paced: {settings.EdgePacedEvents} events at {settings.EdgeRate}/s ({settings.EdgeRate * settings.EdgeClients:N0} deliveries/s offered), latency from when each event was due to each receipt."));
            Console.WriteLine("BusFlow: event rows committed to the SQLite store, positioned and published by the outbox on the in-memory bus, relayed by the edge. Relay: BusFlow from the edge's bus consumer, SignalR from the SendAsync call.");
            Console.WriteLine();
            Console.WriteLine("| system | deliveries/s | burst s | cpu server | cpu clients | cpu other jobs | server us cpu/delivery | p50 ms | p99 ms | max ms | handed over late p99 ms | at edge consumer p99 ms | relay p50 ms | relay p99 ms |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            var medians = results.ToDictionary(r => r.Key, r => new EdgeRun(
                Median(r.Value.Select(m => m.MessagesPerSecond)),
                Median(r.Value.Select(m => m.BurstSeconds)),
                Median(r.Value.Select(m => m.ServerCores)),
                Median(r.Value.Select(m => m.ClientCores)),
                Median(r.Value.Select(m => m.OtherCores)),
                Median(r.Value.Select(m => m.ServerMicrosPerMessage)),
                Median(r.Value.Select(m => m.P50)),
                Median(r.Value.Select(m => m.P99)),
                Median(r.Value.Select(m => m.Max)),
                Median(r.Value.Select(m => m.RelayP50)),
                Median(r.Value.Select(m => m.RelayP99)),
                Median(r.Value.Select(m => m.HandedP99)),
                (int)Median(r.Value.Select(m => (double)m.HandedOver100)),
                r.Value.All(m => m.AtEdgeP99 is not null) ? Median(r.Value.Select(m => m.AtEdgeP99!.Value)) : null));
            foreach (var (system, m) in medians)
            {
                Console.WriteLine(Invariant(
                    $"| {system} | {m.MessagesPerSecond:N0} | {m.BurstSeconds:0.00} | {m.ServerCores:0.00} | {m.ClientCores:0.00} | {m.OtherCores:0.00} | {m.ServerMicrosPerMessage:0.0} | {m.P50:0.0} | {m.P99:0.0} | {m.Max:0.0} | {m.HandedP99:0.0} | {Fixed(m.AtEdgeP99)} | {m.RelayP50:0.0} | {m.RelayP99:0.0} |"));
            }

            var busflow = medians[EdgeBenchServer.BusFlow];
            var signalr = medians[EdgeBenchServer.SignalR];
            var ratio = busflow.MessagesPerSecond / signalr.MessagesPerSecond;
            Console.WriteLine();
            Console.WriteLine(Invariant($"throughput busflow / signalr = {ratio:0.00} ({(ratio >= 2 ? "meets" : "misses")} the target of at least 2)"));
            Console.WriteLine(Invariant($"p99 busflow {busflow.P99:0.0} ms vs signalr {signalr.P99:0.0} ms from due ({(busflow.P99 <= signalr.P99 ? "meets" : "misses")} the target of no worse); relay alone {busflow.RelayP99:0.0} ms vs {signalr.RelayP99:0.0} ms ({(busflow.RelayP99 <= signalr.RelayP99 ? "meets" : "misses")})"));
            Console.WriteLine(Invariant($"server cpu per delivery busflow / signalr = {busflow.ServerMicrosPerMessage / signalr.ServerMicrosPerMessage:0.00}"));
        }

        if (idle.Count > 0)
        {
            Console.WriteLine();
            Console.WriteLine("Idle connections, each system on a fresh server process (server GC), after a warm-up; memory after a forced full compacting GC.");
            Console.WriteLine("kestrel-ws is no relay: a bare ASP.NET Core WebSocket endpoint that answers subscribe and waits in ReceiveAsync with a 64-byte buffer (the floor on Kestrel).");
            Console.WriteLine();
            Console.WriteLine("| system | connections | connect s | GC heap before MiB | after MiB | GC heap B/connection | RSS before MiB | after MiB | RSS B/connection | threads | broadcast first ms | last ms | first to last ms | relay first ms | relay last ms | server us cpu/delivery |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var (system, i) in idle)
            {
                Console.WriteLine(Invariant(
                    $"| {system} | {i.Connections:N0} | {i.ConnectSeconds:0.0} | {Mib(i.Before.GcHeapBytes)} | {Mib(i.After.GcHeapBytes)} | {i.GcBytesPerConnection:N0} | {Mib(i.Before.ResidentBytes)} | {Mib(i.After.ResidentBytes)} | {i.ResidentBytesPerConnection:N0} | {i.Before.Threads} -> {i.After.Threads} | {Fixed(i.FirstMs)} | {Fixed(i.LastMs)} | {Fixed(i.SpanMs)} | {Fixed(i.RelayFirstMs)} | {Fixed(i.RelayLastMs)} | {Fixed(i.ServerMicrosPerDelivery)} |"));
            }

            if (idle.TryGetValue(EdgeBenchServer.BusFlow, out var b))
            {
                Console.WriteLine();
                Console.WriteLine(Invariant($"busflow: {b.GcBytesPerConnection / 1024:0.0} KiB GC heap and {b.ResidentBytesPerConnection / 1024:0.0} KiB RSS per idle connection ({(Math.Max(b.GcBytesPerConnection, b.ResidentBytesPerConnection) < 10 * 1024 ? "meets" : "misses")} the target of under 10 KB)"));
            }
        }

        Console.WriteLine();
    }

    /// <summary>Every receipt's latency in ms from its event's reference time, sorted.</summary>
    private static double[] Latencies(ReceiptBoard board, long[] from)
    {
        var result = new double[board.At.Length];
        var n = 0;
        for (var c = 0; c < board.Clients; c++)
        {
            for (var i = 0; i < board.Events; i++)
            {
                var at = board.At[((long)c * board.Events) + i];
                if (at != 0 && from[i] != 0)
                {
                    result[n++] = (at - from[i]) * 1000.0 / Stopwatch.Frequency;
                }
            }
        }

        Array.Resize(ref result, n);
        Array.Sort(result);
        return result;
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Fixed(double? value) => value is { } v ? v.ToString("0.0", CultureInfo.InvariantCulture) : "-";

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string OpenFilesLimit() =>
        File.Exists("/proc/self/limits") ? string.Join(" / ", File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal))?[26..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Take(2) ?? ["?"]) + " (soft / hard)" : "?";
}
