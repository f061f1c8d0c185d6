using System.Diagnostics;
using System.Text;
using static BusFlow.Benchmarks.E2eReport;

namespace BusFlow.Benchmarks;

/// <summary>One block of events to N subscribers of one pipeline: per event, how long until the last subscriber had it.</summary>
/// <param name="LastP50">Median over events of hand-over to the last subscriber's receipt, ms.</param>
/// <param name="LastP99">99th percentile of the same, ms.</param>
/// <param name="RelayP50">BusFlow: median over events of the edge's bus consumer receiving it to the last receipt, ms.</param>
/// <param name="RelayP99">BusFlow: its 99th percentile, ms.</param>
/// <param name="DueP99">99th percentile over events of due to the last receipt, ms.</param>
public sealed record FanoutRun(double LastP50, double LastP99, double RelayP50, double RelayP99, double DueP99);

/// <summary>
/// <c>e2e-fanout</c>: one pipeline watched by 1, 100, 1,000 and 10,000 WebSocket subscribers; the
/// time for the last subscriber to receive each event. Reuses the <c>edge</c> scenario's servers
/// (each in its own process: BusFlow's edge on the in-memory bus + SQLite, events committed as rows
/// and delivered by the outbox; the SignalR hub broadcasting the same JSON) and its clients in this
/// process. BusFlow's clients subscribe to the pipeline's id; SignalR's get <c>Clients.All</c>,
/// which for one watched pipeline is the same set. See docs/performance.md.
/// </summary>
public static class E2eFanout
{
    private static readonly string[] Systems = [EdgeBenchServer.BusFlow, EdgeBenchServer.SignalR];

    public static async Task Run(E2eSettings settings)
    {
        var load = LoadNow();
        Console.WriteLine(Fmt($"e2e-fanout: {string.Join(", ", settings.FanoutClients)} subscribers of one pipeline; {settings.Repetitions} blocks of events per count; open files limit {OpenFiles()}; load average {load}"));
        var results = new Dictionary<(string System, int Clients), List<FanoutRun>>();
        var cpu = new Dictionary<(string System, int Clients), (double Server, double Other)>();
        foreach (var system in Systems)
        {
            await using var server = await EdgeServerProcess.StartAsync(system);
            await WarmUp(server);
            foreach (var clients in settings.FanoutClients)
            {
                var (runs, serverCores, otherCores) = await Measure(server, clients, settings);
                results[(system, clients)] = runs;
                cpu[(system, clients)] = (serverCores, otherCores);
            }
        }

        Write("e2e-fanout", Table(settings, results, cpu, load), settings);
    }

    /// <summary>Events per block and their rate: fewer and slower as one event's broadcast takes longer.</summary>
    private static (int Events, double Rate) Pace(int clients, int events) =>
        clients switch
        {
            <= 100 => (events, 20),
            <= 1000 => (events, 10),
            _ => (Math.Max(5, events / 3), 2),
        };

    private static async Task WarmUp(EdgeServerProcess server)
    {
        var target = new ReceiptTarget();
        var prepared = await server.PostAsync<PreparedEvents>("bench/prepare?events=40&pipelines=1");
        await using var swarm = await Connect(server, 50, target, prepared.PipelineIds[0]);
        await server.WaitForSubscribersAsync(50, TimeSpan.FromSeconds(60));
        var board = new ReceiptBoard(prepared, 50);
        target.Board = board;
        await server.PostAsync<long>("bench/paced?rate=50");
        await board.WaitAsync(TimeSpan.FromSeconds(60), $"{server.Kind} fan-out warm-up");
    }

    private static async Task<(List<FanoutRun>, double, double)> Measure(EdgeServerProcess server, int clients, E2eSettings settings)
    {
        var (perBlock, rate) = Pace(clients, settings.FanoutEvents);
        var events = perBlock * settings.Repetitions;
        var target = new ReceiptTarget();
        var prepared = await server.PostAsync<PreparedEvents>(Fmt($"bench/prepare?events={events}&pipelines=1"));
        var connect = Stopwatch.StartNew();
        await using var swarm = await Connect(server, clients, target, prepared.PipelineIds[0]);
        await server.WaitForSubscribersAsync(clients, TimeSpan.FromSeconds(120));
        var connected = connect.Elapsed.TotalSeconds;
        await Task.Delay(500);
        var board = new ReceiptBoard(prepared, clients);
        target.Board = board;
        var meter = new ResourceMeter();
        var serverCpu = server.CpuSeconds();
        var wall = Stopwatch.StartNew();
        await server.PostAsync<long>(Fmt($"bench/paced?rate={rate}"));
        await board.WaitAsync(TimeSpan.FromSeconds(180), $"{server.Kind} fan-out to {clients}");
        var seconds = wall.Elapsed.TotalSeconds;
        var serverCores = (server.CpuSeconds() - serverCpu) / seconds;
        var resources = meter.Stop((long)events * clients);
        target.Board = null;
        var handoffs = await server.GetAsync<Handoffs>("bench/handoffs");

        // Per event: the last receipt over all clients.
        var last = new long[events];
        for (var c = 0; c < clients; c++)
        {
            for (var i = 0; i < events; i++)
            {
                last[i] = Math.Max(last[i], board.At[((long)c * events) + i]);
            }
        }

        var runs = new List<FanoutRun>();
        for (var block = 0; block < settings.Repetitions; block++)
        {
            var range = Enumerable.Range(block * perBlock, perBlock).ToArray();
            double[] Sorted(long[]? from) => from is null ? [] : range.Select(i => Ms(from[i], last[i])).Order().ToArray();
            var handed = Sorted(handoffs.Handed);
            var relay = Sorted(handoffs.AtEdge);
            var due = Sorted(handoffs.Scheduled);
            runs.Add(new FanoutRun(Percentile(handed, 0.5), Percentile(handed, 0.99), Percentile(relay, 0.5), Percentile(relay, 0.99), Percentile(due, 0.99)));
            Console.WriteLine(Fmt($"  {server.Kind,-7} {clients,6} subscribers, block {block + 1}: {perBlock} events at {rate}/s; hand-over -> last subscriber p50 {runs[^1].LastP50:0.0} p99 {runs[^1].LastP99:0.0} ms; relay alone p50 {F(runs[^1].RelayP50)} p99 {F(runs[^1].RelayP99)} ms; due -> last p99 {runs[^1].DueP99:0.0} ms"));
        }

        var other = Math.Max(0, resources.OtherCores - serverCores);
        Console.WriteLine(Fmt($"  {server.Kind,-7} {clients,6} subscribers connected in {connected:0.0} s; cpu server {serverCores:0.00}, clients {resources.BusFlowCores:0.00}, other jobs {other:0.00} cores; {board.Stray} stray receipts"));
        return (runs, serverCores, other);
    }

    private static async Task<IClientSwarm> Connect(EdgeServerProcess server, int count, ReceiptTarget target, Guid pipelineId) =>
        server.Kind == EdgeBenchServer.SignalR
            ? await HubSwarm.ConnectAsync(server.ClientUri, count, target)
            : await EdgeSocketSwarm.ConnectAsync(server.ClientUri, count, target, subscribe: Encoding.UTF8.GetBytes($$"""{"type":"subscribe","pipelineId":"{{pipelineId}}"}"""));

    private static string Table(E2eSettings settings, Dictionary<(string System, int Clients), List<FanoutRun>> results, Dictionary<(string, int), (double Server, double Other)> cpu, string load)
    {
        var text = new StringBuilder();
        text.AppendLine(Machine(load));
        text.AppendLine(Fmt($"Per event, the time until the last of N subscribers received it, from its hand-over (BusFlow: its row committed in SQLite, then outbox, in-memory bus and edge; SignalR: `Clients.All.SendAsync` called). Median and p99 over the events of a block; medians over {settings.Repetitions} consecutive blocks ({Pace(1, settings.FanoutEvents).Events} events at 20/s for up to 100 subscribers, at 10/s for 1,000, {Pace(10_000, settings.FanoutEvents).Events} at 2/s for 10,000). \"Relay alone\" starts when BusFlow's edge consumer took the event off the bus. Servers and clients share the 2 cores."));
        text.AppendLine();
        text.AppendLine("| subscribers | BusFlow last p50 | BusFlow last p99 | BusFlow relay alone p50 / p99 | SignalR last p50 | SignalR last p99 | p50 ÷ SignalR | p99 ÷ SignalR | cpu server BusFlow / SignalR | cpu other |");
        text.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var clients in settings.FanoutClients)
        {
            if (!results.TryGetValue((EdgeBenchServer.BusFlow, clients), out var b) || !results.TryGetValue((EdgeBenchServer.SignalR, clients), out var s))
            {
                continue;
            }

            double M(List<FanoutRun> runs, Func<FanoutRun, double> value) => Mid(runs.Select(value));
            var (busflowServer, busflowOther) = cpu[(EdgeBenchServer.BusFlow, clients)];
            var (signalrServer, signalrOther) = cpu[(EdgeBenchServer.SignalR, clients)];
            text.AppendLine(Fmt(
                $"| {clients:N0} | {F(M(b, r => r.LastP50))} | **{F(M(b, r => r.LastP99))}** | {F(M(b, r => r.RelayP50))} / {F(M(b, r => r.RelayP99))} | {F(M(s, r => r.LastP50))} | **{F(M(s, r => r.LastP99))}** | {F(M(b, r => r.LastP50) / M(s, r => r.LastP50), "0.00")} | {F(M(b, r => r.LastP99) / M(s, r => r.LastP99), "0.00")} | {busflowServer:0.00} / {signalrServer:0.00} | {Math.Max(busflowOther, signalrOther):0.00} |"));
        }

        return text.ToString();
    }

    private static string OpenFiles()
    {
        var line = File.Exists("/proc/self/limits") ? File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal)) : null;
        return line is null ? "n/a" : string.Join(' ', line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(3).Take(1));
    }
}
