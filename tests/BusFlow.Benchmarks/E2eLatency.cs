using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using BusFlow.Contracts;
using BusFlow.Edge;
using BusFlow.Store;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static BusFlow.Benchmarks.E2eReport;

namespace BusFlow.Benchmarks;

/// <summary>One measurement of <c>e2e-latency</c>: one system at one offered rate.</summary>
/// <param name="Offered">Pipelines (jobs) scheduled.</param>
/// <param name="StartedPerSecond">Starts per second actually published (scheduled count / time to the last publish).</param>
/// <param name="Completed">StepCompleted events the WebSocket subscriber received within the wait.</param>
/// <param name="CompletedPerSecond">Completed / time from the first due start to the last receipt.</param>
/// <param name="P50">Worker's return to WebSocket receipt, median, ms.</param>
/// <param name="P99">Worker's return to WebSocket receipt, 99th percentile, ms.</param>
/// <param name="Max">Worker's return to WebSocket receipt, largest, ms.</param>
/// <param name="FromDueP50">From when the start was due (open loop) to WebSocket receipt, median, ms.</param>
/// <param name="FromDueP99">The same, 99th percentile, ms.</param>
/// <param name="Resources">CPU during the measurement.</param>
public sealed record LatencyRun(int Offered, double StartedPerSecond, int Completed, double CompletedPerSecond, double P50, double P99, double Max, double FromDueP50, double FromDueP99, ResourceUse Resources);

/// <summary>The baseline's job: what a team without BusFlow publishes to its worker.</summary>
public sealed record BaselineRunStep
{
    public required Guid JobId { get; init; }
}

/// <summary>The baseline worker's completion, published straight to the relay (no saga, no store).</summary>
public sealed record BaselineStepCompleted
{
    public required Guid JobId { get; init; }

    public required string StepName { get; init; }

    public double DurationMs { get; init; }

    public JsonElement? Result { get; init; }

    public DateTimeOffset Timestamp { get; init; }
}

/// <summary>When each worker returned and each subscriber receipt arrived (Stopwatch ticks), by pipeline or job id.</summary>
public sealed class LatencyProbe
{
    public ConcurrentDictionary<Guid, long> WorkerDone { get; } = new();

    public ConcurrentDictionary<Guid, long> Received { get; private set; } = new();

    /// <summary>Receipts of this measurement's ids only; later ones of an earlier measurement are ignored.</summary>
    public HashSet<Guid> Expected { get; private set; } = [];

    private long _lastActivity;

    /// <summary>The latest worker return or receipt: a run that still shows either is still draining.</summary>
    public long LastActivity => Interlocked.Read(ref _lastActivity);

    public void WorkerFinished(Guid id)
    {
        var now = Stopwatch.GetTimestamp();
        WorkerDone[id] = now;
        Interlocked.Exchange(ref _lastActivity, now);
    }

    public void Begin(IEnumerable<Guid> ids)
    {
        Expected = [.. ids];
        Received = new ConcurrentDictionary<Guid, long>();
        WorkerDone.Clear();
        Interlocked.Exchange(ref _lastActivity, Stopwatch.GetTimestamp());
    }

    public void Receipt(Guid id, long at)
    {
        Interlocked.Exchange(ref _lastActivity, at);
        if (Expected.Contains(id))
        {
            Received.TryAdd(id, at);
        }
    }
}

/// <summary>The baseline's worker: a plain MassTransit consumer that returns at once and publishes its completion.</summary>
public sealed class BaselineWorkerConsumer(LatencyProbe probe) : IConsumer<BaselineRunStep>
{
    private static readonly JsonElement Ok = JsonSerializer.SerializeToElement(new { ok = true });

    public Task Consume(ConsumeContext<BaselineRunStep> context)
    {
        var started = Stopwatch.GetTimestamp();
        probe.WorkerFinished(context.Message.JobId);
        var done = probe.WorkerDone[context.Message.JobId];
        return context.Publish(new BaselineStepCompleted
        {
            JobId = context.Message.JobId,
            StepName = E2eLatency.Step,
            DurationMs = Stopwatch.GetElapsedTime(started, done).TotalMilliseconds,
            Result = Ok,
            Timestamp = DateTimeOffset.UtcNow,
        });
    }
}

/// <summary>The baseline's relay consumer: turns each completion into the same JSON the edge sends and pushes it to every socket.</summary>
public sealed class BaselineRelayConsumer(BaselineRelay relay) : IConsumer<BaselineStepCompleted>
{
    public Task Consume(ConsumeContext<BaselineStepCompleted> context)
    {
        var m = context.Message;
        relay.Broadcast(PipelineEventJson.SerializeToUtf8Bytes(new StepCompleted
        {
            PipelineId = m.JobId,
            Seq = 1,
            Timestamp = m.Timestamp,
            Definition = E2eLatency.Pipeline,
            StepName = m.StepName,
            StepIndex = 0,
            Attempt = 1,
            DurationMs = m.DurationMs,
            Result = m.Result,
        }));
        return Task.CompletedTask;
    }
}

/// <summary>
/// The hand-written relay a team would write: a WebSocket endpoint keeping its sockets in a set,
/// each with a bounded queue and a writer loop (events are dropped for a socket whose queue is full).
/// </summary>
public sealed class BaselineRelay
{
    private readonly ConcurrentDictionary<Channel<byte[]>, byte> _sockets = new();

    public void Broadcast(byte[] json)
    {
        foreach (var queue in _sockets.Keys)
        {
            queue.Writer.TryWrite(json);
        }
    }

    public async Task AcceptAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = 400;
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(1024) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
        _sockets[queue] = 0;
        var writer = Task.Run(async () =>
        {
            await foreach (var json in queue.Reader.ReadAllAsync())
            {
                await socket.SendAsync(json, WebSocketMessageType.Text, true, CancellationToken.None);
            }
        });
        var buffer = new byte[512];
        try
        {
            while ((await socket.ReceiveAsync(buffer, context.RequestAborted)).MessageType != WebSocketMessageType.Close)
            {
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
        {
        }
        finally
        {
            _sockets.TryRemove(queue, out _);
            queue.Writer.TryComplete();
        }

        try
        {
            await writer;
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or IOException)
        {
        }
    }
}

/// <summary>
/// <c>e2e-latency</c>: from a step's completion in its worker to a WebSocket subscriber receiving
/// <c>StepCompleted</c>, at offered loads of pipelines per second (open loop), on the in-memory bus +
/// SQLite and on RabbitMQ + PostgreSQL, beside a hand-written MassTransit worker + relay with no store.
/// Everything runs in this process: one BusFlow host (saga, worker, store, edge on a real Kestrel)
/// and the subscriber's <see cref="ClientWebSocket"/>. See docs/performance.md.
/// </summary>
public static class E2eLatency
{
    public const string Memory = "memory";
    public const string Rabbit = "rabbit";
    public const string Pipeline = "e2e";
    public const string Step = "e2e-step";
    private const string BusFlowSystem = "busflow";
    private const string BaselineSystem = "baseline";
    private const int WarmJitMethods = WarmedRepetitions.DefaultJitMethods;
    private const int MaxWarmUps = WarmedRepetitions.DefaultMaxWarmUps;

    public static async Task Run(E2eSettings settings)
    {
        var load = LoadNow();
        Console.WriteLine(Fmt($"e2e-latency: rates {string.Join(", ", settings.Rates)} pipelines/s for {settings.LatencySeconds} s each, {settings.Repetitions} repetitions after up to {MaxWarmUps} warm-ups of 200 pipelines at 100/s (until one compiles at most {WarmJitMethods} methods); stacks {string.Join(", ", settings.Stacks)}; load average {load}"));
        var results = new Dictionary<(string Stack, string System, double Rate), List<LatencyRun>>();
        foreach (var stack in settings.Stacks)
        {
            await RunStack(stack, settings, results);
        }

        Write("e2e-latency", Table(settings, results, load), settings);
    }

    private static async Task RunStack(string stack, E2eSettings settings, Dictionary<(string, string, double), List<LatencyRun>> results)
    {
        BenchDatabase? database = null;
        RabbitMqVirtualHost? vhost = null;
        var sqlite = Path.Combine(Path.GetTempPath(), $"busflow-e2e-{Guid.NewGuid():N}.db");
        try
        {
            Dictionary<string, string?> configuration = [];
            BusFlowStoreOptions store;
            if (stack == Rabbit)
            {
                database = await BenchDatabase.Create();
                vhost = await BenchVirtualHost.Create();
                configuration = vhost.BusFlowSettings();
                store = new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = database.ConnectionString, ApplyMigrations = true };
            }
            else
            {
                store = new BusFlowStoreOptions { Provider = StoreProviderKind.Sqlite, ConnectionString = $"Data Source={sqlite}", ApplyMigrations = true };
            }

            if (settings.EventPublishing is { } publishing)
            {
                store.EventPublishing = publishing;
            }

            if (settings.InProcessEvents is { } inProcess)
            {
                configuration["BusFlow:Edge:TakeCommittedEventsInProcess"] = inProcess ? "true" : "false";
            }

            var probe = new LatencyProbe();
            await using var app = await StartHost(configuration, store, probe);
            var baseUri = new Uri(app.Urls.First());
            var bus = app.Services.GetRequiredService<IBus>();
            using var busflowClient = await ConnectAsync(new Uri($"ws://{baseUri.Authority}/ws"), """{"type":"subscribe","pipelineId":"*","eventTypes":["StepCompleted"]}""", probe);
            using var baselineClient = await ConnectAsync(new Uri($"ws://{baseUri.Authority}/baseline/ws"), null, probe);
            Console.WriteLine(Fmt($"  {stack}: host at {baseUri} ({(stack == Rabbit ? $"RabbitMQ vhost {vhost!.Name}, PostgreSQL {database!.Name}" : "in-memory bus, SQLite")})"));

            // Warm-ups of 200 pipelines at 100/s, as in e2e-throughput: the repetitions measure a process past tiered JIT compilation.
            await WarmedRepetitions.RunAsync(settings.Repetitions, MaxWarmUps, WarmJitMethods, async (rep, label) =>
            {
                var jitted = 0L;
                foreach (var rate in rep == 0 ? new[] { 100.0 } : settings.Rates)
                {
                    foreach (var system in new[] { BusFlowSystem, BaselineSystem })
                    {
                        var run = await Measure(bus, probe, system, rate, rep == 0 ? 200 : Pipelines(settings, rate), settings.Timeout);
                        Console.WriteLine(Fmt(
                            $"  {stack,-6} {label,-7} {system,-8} {rate,5}/s: offered {run.Offered}, started {run.StartedPerSecond:0}/s, completed {run.Completed} ({run.CompletedPerSecond:0}/s); worker->ws p50 {run.P50:0.00} p99 {run.P99:0.00} max {run.Max:0.00} ms; due->ws p50 {run.FromDueP50:0.0} p99 {run.FromDueP99:0.0} ms; {run.Resources}"));
                        jitted = Math.Max(jitted, run.Resources.MethodsJitted);
                        if (rep > 0)
                        {
                            (results.TryGetValue((stack, system, rate), out var list) ? list : results[(stack, system, rate)] = []).Add(run);
                        }
                    }
                }

                return jitted;
            });

            await busflowClient.CloseAsync();
            await baselineClient.CloseAsync();
            await app.StopAsync();
        }
        finally
        {
            if (database is not null)
            {
                await database.DisposeAsync();
            }

            if (vhost is not null)
            {
                await vhost.DisposeAsync();
            }

            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            foreach (var file in new[] { sqlite, sqlite + "-wal", sqlite + "-shm" }.Where(File.Exists))
            {
                File.Delete(file);
            }
        }
    }

    private static async Task<WebApplication> StartHost(Dictionary<string, string?> configuration, BusFlowStoreOptions store, LatencyProbe probe)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        builder.Configuration.AddInMemoryCollection(configuration);
        builder.Services.AddSingleton(probe);
        builder.Services.AddSingleton<BaselineRelay>();
        builder.Services.AddBusFlow(builder.Configuration, b => b
            .UseStore(store)
            .AddWorker(Step, ctx =>
            {
                // The worker's completion: the instant the latency is measured from.
                probe.WorkerFinished(ctx.PipelineId);
                return Task.FromResult(StepResult.Success(new { ok = true }));
            }, 64)
            .AddPipeline(Pipeline, p => p.Step(Step))
            .UseEdge(builder.Configuration),
            bus =>
            {
                bus.AddConsumer<BaselineWorkerConsumer>().Endpoint(e => e.Name = "e2e-baseline-worker");
                bus.AddConsumer<BaselineRelayConsumer>().Endpoint(e => e.Name = "e2e-baseline-relay");
            });
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(5));
        var app = builder.Build();
        app.MapBusFlowEdge();
        app.Map("/baseline/ws", (HttpContext context, BaselineRelay relay) => relay.AcceptAsync(context));
        await app.StartAsync();
        return app;
    }

    /// <summary>Pipelines per measurement: the rate for the set seconds, at least 60 (for a p99) and at most 1,000 (a backlog has to drain).</summary>
    private static int Pipelines(E2eSettings settings, double rate) => (int)Math.Clamp(Math.Round(rate * settings.LatencySeconds), 60, 1000);

    /// <summary>
    /// Offers <paramref name="count"/> starts at <paramref name="rate"/> per second (open loop: start
    /// k is due at t0 + k / rate and is published when due, whatever happened to the earlier ones),
    /// then waits until every StepCompleted arrived, or no worker returned and nothing arrived for 10 s, or the timeout.
    /// </summary>
    private static async Task<LatencyRun> Measure(IBus bus, LatencyProbe probe, string system, double rate, int count, TimeSpan timeout)
    {
        var ids = Enumerable.Range(0, count).Select(_ => NewId.NextGuid()).ToArray();
        var due = new long[count];
        probe.Begin(ids);
        await Task.Delay(200);
        var meter = new ResourceMeter();
        var t0 = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 50);
        for (var k = 0; k < count; k++)
        {
            due[k] = t0 + (long)(k * Stopwatch.Frequency / rate);
        }

        var publishes = new List<Task>(count);
        var next = 0;
        while (next < count)
        {
            var now = Stopwatch.GetTimestamp();
            while (next < count && due[next] <= now)
            {
                var id = ids[next++];
                publishes.Add(system == BusFlowSystem
                    ? bus.Publish(new StartPipeline { PipelineId = id, Definition = Pipeline })
                    : bus.Publish(new BaselineRunStep { JobId = id }));
            }

            if (next < count)
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due[next]);
                await Task.Delay(wait > TimeSpan.FromMilliseconds(1) ? wait : TimeSpan.FromMilliseconds(1));
            }
        }

        await Task.WhenAll(publishes);
        var published = Stopwatch.GetTimestamp();
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (probe.Received.Count < count && Stopwatch.GetTimestamp() < deadline
            && Stopwatch.GetElapsedTime(probe.LastActivity) < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(20);
        }

        var resources = meter.Stop(Math.Max(1, probe.Received.Count));
        var index = ids.Select((id, k) => (id, k)).ToDictionary(p => p.id, p => p.k);
        var received = probe.Received.ToArray();
        var fromWorker = received.Where(r => probe.WorkerDone.ContainsKey(r.Key)).Select(r => Ms(probe.WorkerDone[r.Key], r.Value)).Order().ToArray();
        var fromDue = received.Select(r => Ms(due[index[r.Key]], r.Value)).Order().ToArray();
        var last = received.Length == 0 ? t0 : received.Max(r => r.Value);
        var result = new LatencyRun(
            count,
            count / Math.Max(1e-9, Stopwatch.GetElapsedTime(t0, published).TotalSeconds),
            received.Length,
            received.Length / Math.Max(1e-9, Stopwatch.GetElapsedTime(t0, last).TotalSeconds),
            Percentile(fromWorker, 0.50),
            Percentile(fromWorker, 0.99),
            fromWorker.Length == 0 ? double.NaN : fromWorker[^1],
            Percentile(fromDue, 0.50),
            Percentile(fromDue, 0.99),
            resources);

        // A backlog left behind (offered more than the system completes) must not load the next measurement.
        if (received.Length < count)
        {
            var quiet = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
            while (Stopwatch.GetElapsedTime(probe.LastActivity) < TimeSpan.FromSeconds(3) && Stopwatch.GetTimestamp() < quiet)
            {
                await Task.Delay(200);
            }
        }

        return result;
    }

    private static async Task<LatencyClient> ConnectAsync(Uri uri, string? subscribe, LatencyProbe probe)
    {
        var socket = new ClientWebSocket();
        await socket.ConnectAsync(uri, CancellationToken.None);
        var client = new LatencyClient(socket, probe);
        if (subscribe is not null)
        {
            await socket.SendAsync(Encoding.UTF8.GetBytes(subscribe), WebSocketMessageType.Text, true, CancellationToken.None);
            await client.Subscribed.WaitAsync(TimeSpan.FromSeconds(30));
        }

        return client;
    }

    private static string Table(E2eSettings settings, Dictionary<(string Stack, string System, double Rate), List<LatencyRun>> results, string load)
    {
        var text = new StringBuilder();
        text.AppendLine(Machine(load));
        text.AppendLine(Fmt($"Medians of {settings.Repetitions} repetitions (after warm-ups of 200 pipelines at 100/s repeated until neither system JIT-compiled more than {WarmJitMethods} methods in one, at most {MaxWarmUps}); each repetition offers {string.Join(", ", settings.Rates.Select(r => Fmt($"{Pipelines(settings, r)} pipelines at {r}/s")))} (the rate for {settings.LatencySeconds} s, at least 60 and at most 1,000 pipelines). Latency in ms from the worker's return to the WebSocket subscriber's receipt of `StepCompleted`; \"from due\" is from when the start was scheduled (open loop). Baseline: MassTransit worker publishing its completion to a hand-written WebSocket relay, no saga, no store, same transport."));
        text.AppendLine();
        text.AppendLine("| stack | offered/s | BusFlow completed/s | baseline completed/s | BusFlow p50 | BusFlow p99 | baseline p50 | baseline p99 | p50 ÷ baseline | p99 ÷ baseline | BusFlow from due p50 / p99 | baseline from due p50 / p99 | completed / offered (BusFlow) | cpu other |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var stack in settings.Stacks)
        {
            foreach (var rate in settings.Rates)
            {
                if (!results.TryGetValue((stack, BusFlowSystem, rate), out var b) || !results.TryGetValue((stack, BaselineSystem, rate), out var h))
                {
                    continue;
                }

                double M(List<LatencyRun> runs, Func<LatencyRun, double> value) => Mid(runs.Select(value));
                var name = stack == Rabbit ? "RabbitMQ + PostgreSQL" : "in-memory + SQLite";
                text.AppendLine(Fmt(
                    $"| {name} | {rate:0} | {F(M(b, r => r.CompletedPerSecond), "0")} | {F(M(h, r => r.CompletedPerSecond), "0")} | {F(M(b, r => r.P50), "0.00")} | **{F(M(b, r => r.P99), "0.00")}** | {F(M(h, r => r.P50), "0.00")} | {F(M(h, r => r.P99), "0.00")} | {F(M(b, r => r.P50) / M(h, r => r.P50), "0.0")} | {F(M(b, r => r.P99) / M(h, r => r.P99), "0.0")} | {F(M(b, r => r.FromDueP50))} / {F(M(b, r => r.FromDueP99))} | {F(M(h, r => r.FromDueP50))} / {F(M(h, r => r.FromDueP99))} | {string.Join(", ", b.Select(r => Fmt($"{r.Completed}/{r.Offered}")))} | {F(Mid(b.Concat(h).Select(r => r.Resources.OtherCores)), "0.00")} |"));
            }
        }

        return text.ToString();
    }
}

/// <summary>A subscriber: records the receipt of every <c>StepCompleted</c> by its pipeline (or job) id.</summary>
public sealed class LatencyClient : IDisposable
{
    private readonly ClientWebSocket _socket;
    private readonly TaskCompletionSource _subscribed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _loop;

    public LatencyClient(ClientWebSocket socket, LatencyProbe probe)
    {
        _socket = socket;
        _loop = Task.Run(() => ReceiveAsync(probe));
    }

    public Task Subscribed => _subscribed.Task;

    private async Task ReceiveAsync(LatencyProbe probe)
    {
        var buffer = new byte[16 * 1024];
        var length = 0;
        try
        {
            while (true)
            {
                var result = await _socket.ReceiveAsync(buffer.AsMemory(length), CancellationToken.None);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return;
                }

                length += result.Count;
                if (!result.EndOfMessage)
                {
                    continue;
                }

                var at = Stopwatch.GetTimestamp();
                using (var document = JsonDocument.Parse(buffer.AsMemory(0, length)))
                {
                    var root = document.RootElement;
                    var type = root.GetProperty("type");
                    if (type.ValueEquals("StepCompleted"u8))
                    {
                        probe.Receipt(root.GetProperty("pipelineId").GetGuid(), at);
                    }
                    else if (type.ValueEquals("subscribed"u8))
                    {
                        _subscribed.TrySetResult();
                    }
                }

                length = 0;
            }
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            _subscribed.TrySetException(ex);
        }
    }

    public async Task CloseAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token);
            await _loop.WaitAsync(timeout.Token);
        }
        catch (Exception ex) when (ex is WebSocketException or OperationCanceledException)
        {
        }
    }

    public void Dispose() => _socket.Dispose();
}
