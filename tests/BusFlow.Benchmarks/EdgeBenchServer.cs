using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Edge;
using BusFlow.Store;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.SignalR;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Benchmarks;

/// <summary>
/// The server of the <c>edge</c> scenario, run in its own process (<c>edge-server busflow</c> or
/// <c>edge-server signalr</c>) so that its CPU and memory are not mixed with the clients'. A real
/// Kestrel on 127.0.0.1 serves either BusFlow's edge (<c>/ws</c>; in-memory bus, SQLite store) or an
/// ASP.NET Core SignalR hub (<c>/hub</c>), plus <c>/bench/*</c> endpoints the driver calls to hand
/// events over, read back when each was handed over, and read the process's memory. Prints
/// <c>ready &lt;url&gt;</c> when listening; stops when its standard input closes.
/// </summary>
public static class EdgeBenchServer
{
    public const string BusFlow = "busflow";
    public const string SignalR = "signalr";

    /// <summary>Not a relay: a bare ASP.NET Core WebSocket endpoint, the least a Kestrel WebSocket server holds per idle connection.</summary>
    public const string Floor = "kestrel-ws";

    public static async Task<int> Run(string kind)
    {
        if (kind is not (BusFlow or SignalR or Floor))
        {
            throw new ArgumentException($"edge-server {kind}: expected {BusFlow}, {SignalR} or {Floor}");
        }

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        var feed = new EdgeBenchFeed();
        builder.Services.AddSingleton(feed);
        var database = Path.Combine(Path.GetTempPath(), $"busflow-edge-bench-{Guid.NewGuid():N}.db");
        if (kind == BusFlow)
        {
            builder.Services.AddBusFlow(builder.Configuration, b => b
                .UseStore(new BusFlowStoreOptions
                {
                    Provider = StoreProviderKind.Sqlite,
                    ConnectionString = $"Data Source={database}",
                    ApplyMigrations = true,
                })
                .AddWorker(BenchHost.Pipeline, _ => Task.FromResult(StepResult.Success(new { ok = true })))
                .AddPipeline(BenchHost.Pipeline, p => p.Step(BenchHost.Pipeline))
                // The idle-connection measurement opens 10,000 sockets, plus the warm-up's; the default limit is 10,000.
                .UseEdge(builder.Configuration, o => o.MaxConnections = 12_000),
                bus => bus.AddConsumeObserver<EdgeArrivalObserver>());
        }
        else if (kind == SignalR)
        {
            builder.Services.AddSignalR();
        }

        var app = builder.Build();
        if (kind == BusFlow)
        {
            app.MapBusFlowEdge();
            feed.UseStore(app.Services.GetRequiredService<IDbContextFactory<BusFlowDbContext>>(), OutboxWake(app.Services));
        }
        else if (kind == SignalR)
        {
            app.MapHub<EventsHub>("/hub");
            feed.UseHub(app.Services.GetRequiredService<IHubContext<EventsHub>>());
        }
        else
        {
            app.UseWebSockets();
            app.Map("/ws", feed.HoldSocketAsync);
        }

        MapControl(app, kind, feed);
        await app.StartAsync();
        Console.WriteLine($"ready {app.Urls.First()}");
        // The driver closes our standard input to stop us (also when it dies).
        _ = Task.Run(async () =>
        {
            await Console.In.ReadToEndAsync();
            app.Lifetime.StopApplication();
        });
        await app.WaitForShutdownAsync();
        await app.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        foreach (var file in new[] { database, database + "-wal", database + "-shm" }.Where(File.Exists))
        {
            File.Delete(file);
        }

        return 0;
    }

    private static void MapControl(WebApplication app, string kind, EdgeBenchFeed feed)
    {
        var bench = app.MapGroup("/bench");
        bench.MapPost("/prepare", (int events, int pipelines) => TypedResults.Ok(feed.Prepare(events, pipelines)));
        bench.MapPost("/burst", async (CancellationToken ct) => TypedResults.Ok(await feed.BurstAsync(ct)));
        bench.MapPost("/paced", async (double rate, CancellationToken ct) => TypedResults.Ok(await feed.PacedAsync(rate, ct)));
        bench.MapGet("/handoffs", () => TypedResults.Ok(feed.Handoffs()));
        bench.MapGet("/subscribers", (IServiceProvider services) => TypedResults.Ok(kind == BusFlow ? Subscriptions(services) : feed.HubConnections));
        bench.MapGet("/memory", () => TypedResults.Ok(MemoryFigures.Measure()));
    }

    /// <summary>Subscriptions the edge holds, from its metrics snapshot (what <c>GET /api/metrics</c> shows).</summary>
    private static long Subscriptions(IServiceProvider services) =>
        JsonSerializer.SerializeToElement(services.GetRequiredService<EdgeMetrics>().Snapshot()).GetProperty("subscriptions").GetInt64();

    /// <summary>
    /// A saga transition wakes the outbox delivery when it commits (StoreDecisionRecorder calls
    /// OutboxSignal.Wake). The benchmark commits event rows itself, so it wakes the same internal
    /// signal, found by reflection; without it delivery would wait for its poll interval.
    /// </summary>
    private static Action OutboxWake(IServiceProvider services)
    {
        var type = typeof(BusFlowDbContext).Assembly.GetType("BusFlow.Store.Internal.OutboxSignal");
        var signal = type is null ? null : services.GetService(type);
        var wake = type?.GetMethod("Wake", BindingFlags.Public | BindingFlags.Instance, Type.EmptyTypes);
        if (signal is null || wake is null)
        {
            Console.Error.WriteLine("warning: OutboxSignal.Wake not found; delivery waits for its poll interval");
            return () => { };
        }

        return (Action)Delegate.CreateDelegate(typeof(Action), signal, wake);
    }
}

/// <summary>The SignalR baseline: a hub clients connect to; the server broadcasts with <c>Clients.All.SendAsync</c>.</summary>
public sealed class EventsHub(EdgeBenchFeed feed) : Hub
{
    public override Task OnConnectedAsync()
    {
        feed.HubConnected(+1);
        return Task.CompletedTask;
    }

    public override Task OnDisconnectedAsync(Exception? exception)
    {
        feed.HubConnected(-1);
        return Task.CompletedTask;
    }
}

/// <summary>Notes when the edge's bus consumer takes each pipeline event off the bus: where the relay starts.</summary>
public sealed class EdgeArrivalObserver(EdgeBenchFeed feed) : IConsumeObserver
{
    public Task PreConsume<T>(ConsumeContext<T> context)
        where T : class
    {
        if (context.Message is PipelineEvent e)
        {
            feed.ArrivedAtEdge(e);
        }

        return Task.CompletedTask;
    }

    public Task PostConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception)
        where T : class => Task.CompletedTask;
}

/// <summary>What the driver gets back from <c>/bench/prepare</c>: the pipelines, in the order events go round them.</summary>
public sealed record PreparedEvents(Guid[] PipelineIds, int Events, int PayloadBytes);

/// <summary>When the events were handed to the server side (Stopwatch ticks, comparable across processes on Linux).</summary>
/// <param name="Scheduled">When each event was due (paced runs; the burst's start for a burst).</param>
/// <param name="Handed">When it was handed over: its row committed (BusFlow) or SendAsync called (SignalR).</param>
/// <param name="AtEdge">BusFlow only: when the edge's bus consumer received it (after the outbox published it).</param>
public sealed record Handoffs(long[] Scheduled, long[] Handed, long[]? AtEdge);

/// <summary>
/// The events of one measurement and how they are handed over. BusFlow: each event is a row in
/// busflow_events, committed the way a saga transition records it, then positioned and published by
/// BusFlow's outbox on the in-memory bus and relayed by the edge. SignalR: the same JSON, parsed
/// once, sent with <c>Clients.All.SendAsync("event", json)</c>.
/// </summary>
public sealed class EdgeBenchFeed
{
    private const int BurstBatch = 100;

    private IDbContextFactory<BusFlowDbContext>? _databases;
    private Action _wake = () => { };
    private IHubContext<EventsHub>? _hub;
    private PipelineEvent[] _events = [];
    private JsonElement[] _json = [];
    private Dictionary<(Guid, long), int> _index = [];
    private long[] _scheduled = [];
    private long[] _handed = [];
    private long[] _atEdge = [];
    private long _hubConnections;

    public long HubConnections => Interlocked.Read(ref _hubConnections);

    public void UseStore(IDbContextFactory<BusFlowDbContext> databases, Action wake)
    {
        _databases = databases;
        _wake = wake;
    }

    public void UseHub(IHubContext<EventsHub> hub) => _hub = hub;

    public void HubConnected(int delta) => Interlocked.Add(ref _hubConnections, delta);

    /// <summary>The floor: accepts, answers the subscribe message, then only waits for the next frame in a 64-byte buffer.</summary>
    public async Task HoldSocketAsync(HttpContext context)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var buffer = new byte[64];
        await socket.ReceiveAsync(buffer.AsMemory(), context.RequestAborted);
        await socket.SendAsync("""{"type":"subscribed","pipelineId":"*"}"""u8.ToArray(), System.Net.WebSockets.WebSocketMessageType.Text, true, context.RequestAborted);
        HubConnected(+1);
        try
        {
            while ((await socket.ReceiveAsync(buffer.AsMemory(), context.RequestAborted)).MessageType != System.Net.WebSockets.WebSocketMessageType.Close)
            {
            }
        }
        catch (Exception ex) when (ex is System.Net.WebSockets.WebSocketException or OperationCanceledException or IOException)
        {
        }
        finally
        {
            HubConnected(-1);
        }
    }

    /// <summary>
    /// <paramref name="count"/> StepProgress events of fresh pipelines, round robin over
    /// <paramref name="pipelines"/> of them (seq 1, 2, ... each): event i is seq i / P + 1 of pipeline i % P.
    /// </summary>
    public PreparedEvents Prepare(int count, int pipelines)
    {
        var ids = Enumerable.Range(0, pipelines).Select(_ => NewId.NextGuid()).ToArray();
        var now = DateTimeOffset.UtcNow;
        _events = new PipelineEvent[count];
        _json = new JsonElement[count];
        _index = new Dictionary<(Guid, long), int>(count);
        for (var i = 0; i < count; i++)
        {
            var e = new StepProgress
            {
                PipelineId = ids[i % pipelines],
                Seq = (i / pipelines) + 1,
                Timestamp = now,
                Definition = BenchHost.Pipeline,
                StepName = BenchHost.Pipeline,
                StepIndex = 0,
                Attempt = 1,
                Percent = i % 100,
                Message = "tick",
            };
            _events[i] = e;
            _index[(e.PipelineId, e.Seq)] = i;
            // The bytes the edge sends for it (it gets a position on the way; 7 digits here).
            _json[i] = JsonSerializer.SerializeToElement<PipelineEvent>(e with { Position = 1_000_000 + i }, PipelineEventJson.Options);
        }

        _scheduled = new long[count];
        _handed = new long[count];
        _atEdge = new long[count];
        return new PreparedEvents(ids, count, count == 0 ? 0 : _json[0].GetRawText().Length);
    }

    /// <summary>Hands every event over as fast as the server side takes them; returns when the last was handed over.</summary>
    public async Task<long> BurstAsync(CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        Array.Fill(_scheduled, start);
        if (_hub is not null)
        {
            for (var i = 0; i < _events.Length; i++)
            {
                await SendAsync(i, cancellationToken);
            }
        }
        else
        {
            for (var from = 0; from < _events.Length; from += BurstBatch)
            {
                await RecordAsync(from, Math.Min(BurstBatch, _events.Length - from), cancellationToken);
            }
        }

        return start;
    }

    /// <summary>Hands event k over at start + k / rate (one commit or one SendAsync each), measuring from when it was due.</summary>
    public async Task<long> PacedAsync(double rate, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 100);
        for (var i = 0; i < _events.Length; i++)
        {
            var due = start + (long)(i * Stopwatch.Frequency / rate);
            _scheduled[i] = due;
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait, cancellationToken);
            }

            while (Stopwatch.GetTimestamp() < due)
            {
                Thread.SpinWait(20);
            }

            if (_hub is not null)
            {
                await SendAsync(i, cancellationToken);
            }
            else
            {
                await RecordAsync(i, 1, cancellationToken);
            }
        }

        return start;
    }

    public Handoffs Handoffs() => new(_scheduled, _handed, _hub is null ? _atEdge : null);

    public void ArrivedAtEdge(PipelineEvent e)
    {
        var now = Stopwatch.GetTimestamp();
        if (_index.TryGetValue((e.PipelineId, e.Seq), out var i))
        {
            Volatile.Write(ref _atEdge[i], now);
        }
    }

    private Task SendAsync(int i, CancellationToken cancellationToken)
    {
        _handed[i] = Stopwatch.GetTimestamp();
        return _hub!.Clients.All.SendAsync("event", _json[i], cancellationToken);
    }

    /// <summary>Commits events [from, from + count) as rows, as StoreDecisionRecorder does, and wakes the outbox.</summary>
    private async Task RecordAsync(int from, int count, CancellationToken cancellationToken)
    {
        await using var db = await _databases!.CreateDbContextAsync(cancellationToken);
        for (var i = from; i < from + count; i++)
        {
            var e = _events[i];
            db.Events.Add(new PipelineEventRecord { PipelineId = e.PipelineId, Seq = e.Seq, Type = e.EventType, Timestamp = e.Timestamp, Payload = PipelineEventJson.Serialize(e) });
        }

        await db.SaveChangesAsync(cancellationToken);
        var now = Stopwatch.GetTimestamp();
        for (var i = from; i < from + count; i++)
        {
            _handed[i] = now;
        }

        _wake();
    }
}

/// <summary>The server process's memory: GC heap after a full blocking compacting collection, and resident set size.</summary>
public sealed record MemoryFigures(long GcHeapBytes, long ResidentBytes, int Threads)
{
    public static MemoryFigures Measure()
    {
        for (var i = 0; i < 2; i++)
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }

        return new MemoryFigures(GC.GetTotalMemory(false), Resident(), Process.GetCurrentProcess().Threads.Count);
    }

    private static long Resident()
    {
        var line = File.Exists("/proc/self/status") ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal)) : null;
        return line is null ? Environment.WorkingSet : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
    }
}
