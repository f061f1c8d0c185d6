using System.Diagnostics;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Host.Samples;
using BusFlow.Store;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Benchmarks;

/// <summary>The pipeline shapes the end-to-end scenarios run, with the events a subscriber receives per pipeline.</summary>
public static class E2eShapes
{
    /// <summary>Three steps one after the other (<c>seq3</c>: step1 -> step2 -> step3).</summary>
    public const string Sequential = "seq3";

    /// <summary>The host's sample DAG: fetch -> clean, enrich -> merge -> report.</summary>
    public const string Demo = "demo";

    public const string Worker = "demo-step";

    /// <summary>
    /// Consumers at once on both systems' event subscribers. They only count; a higher limit on the
    /// in-memory transport means more idle readers woken for every message (about 190 KiB per
    /// pipeline at 256, by a gc-verbose trace), which is the harness's cost, not the system's.
    /// </summary>
    public const int SubscriberConcurrency = 4;

    public static readonly string[] SequentialSteps = ["step1", "step2", "step3"];

    /// <summary>The input every pipeline gets: steps do no waiting and report no progress.</summary>
    public static readonly JsonElement Input = JsonSerializer.SerializeToElement(new { delayMs = 0, progressTicks = 0 });

    public static int Steps(string shape) => shape == Demo ? 5 : SequentialSteps.Length;

    /// <summary>BusFlow: PipelineStarted, StepStarted and StepCompleted per step, PipelineCompleted.</summary>
    public static int BusFlowEvents(string shape) => (2 * Steps(shape)) + 2;

    /// <summary>The host's <c>demo</c> DAG itself, and a three-step sequential pipeline, all on its <c>demo-step</c> worker.</summary>
    public static BusFlowBuilder AddShapes(this BusFlowBuilder busflow) => busflow
        .AddPipeline(Demo, SamplePipelines.Demo)
        .AddPipeline(Sequential, p => p
            .Then(SequentialSteps[0], s => s.Worker(Worker))
            .Then(SequentialSteps[1], s => s.Worker(Worker))
            .Then(SequentialSteps[2], s => s.Worker(Worker))
            .DefaultRetry(maxAttempts: 2, initialDelay: TimeSpan.FromMilliseconds(100)));
}

/// <summary>Pipelines (or routing slips) that finished, events received, and when the last one finished.</summary>
public sealed class CompletionCounter
{
    private long _events;
    private long _finished;
    private long _failed;
    private long _last;

    public long Events => Interlocked.Read(ref _events);

    public long Finished => Interlocked.Read(ref _finished);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Stopwatch timestamp of the latest finish.</summary>
    public long LastFinished => Interlocked.Read(ref _last);

    public void Reset()
    {
        Interlocked.Exchange(ref _events, 0);
        Interlocked.Exchange(ref _finished, 0);
        Interlocked.Exchange(ref _failed, 0);
        Interlocked.Exchange(ref _last, 0);
    }

    public void Add(bool finished, bool failed)
    {
        Interlocked.Increment(ref _events);
        if (!finished)
        {
            return;
        }

        if (failed)
        {
            Interlocked.Increment(ref _failed);
        }

        var now = Stopwatch.GetTimestamp();
        var last = Interlocked.Read(ref _last);
        while (now > last)
        {
            var seen = Interlocked.CompareExchange(ref _last, now, last);
            if (seen == last)
            {
                break;
            }

            last = seen;
        }

        Interlocked.Increment(ref _finished);
    }

    /// <summary>Waits until <paramref name="count"/> have finished; throws after <paramref name="timeout"/> saying how far it got.</summary>
    public async Task WaitAsync(long count, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Finished < count)
        {
            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"{Finished}/{count} finished ({Failed} failed), {Events} events received after {timeout.TotalSeconds:0} s");
            }

            await Task.Delay(5, cancellationToken);
        }
    }
}

/// <summary>A BusFlow bus subscriber of every pipeline event type, counting finished pipelines.</summary>
public sealed class E2eBusFlowSubscriber(CompletionCounter counter) : PipelineEventsConsumer
{
    protected override Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context)
    {
        counter.Add(pipelineEvent is PipelineCompleted or PipelineFailed or PipelineCancelled, pipelineEvent is not PipelineCompleted);
        return Task.CompletedTask;
    }
}

/// <summary>One measurement: pipelines run, from the first start sent to the last finish received.</summary>
public sealed record ThroughputRun(int Pipelines, TimeSpan Elapsed, long Events, long Failed)
{
    public double PerSecond => Pipelines / Elapsed.TotalSeconds;

    public ResourceUse? Resources { get; init; }

    /// <summary>CPU seconds of BusFlow's own processes (scaling; null when BusFlow runs in the driver).</summary>
    public double? BusFlowProcessCores { get; init; }

    /// <summary>PostgreSQL write transactions per pipeline (transaction ids taken), when measured.</summary>
    public double? WriteTransactionsPerPipeline { get; init; }

    /// <summary>Events each WebSocket subscriber received (scaling).</summary>
    public IReadOnlyList<long>? SocketEvents { get; init; }
}

/// <summary>What runs the pipelines of a throughput measurement.</summary>
public interface IThroughputSystem : IAsyncDisposable
{
    string Name { get; }

    Task<ThroughputRun> RunAsync(string shape, int pipelines, TimeSpan timeout, CancellationToken cancellationToken);
}

/// <summary>
/// BusFlow in this process: the saga, the demo-step worker (concurrency 32, BusFlow's default) and a bus
/// subscriber of every event, on the in-memory transport with a SQLite file or on RabbitMQ with PostgreSQL.
/// Every event is recorded in the store and delivered through the outbox.
/// </summary>
public sealed class BusFlowE2eHost : IThroughputSystem
{
    private readonly IHost _host;

    private BusFlowE2eHost(IHost host) => _host = host;

    public string Name => "BusFlow";

    private IBus Bus => _host.Services.GetRequiredService<IBus>();

    private CompletionCounter Counter => _host.Services.GetRequiredService<CompletionCounter>();

    /// <summary>Only a driver: no saga and no workers here, they run in other processes (scaling).</summary>
    public static Task<BusFlowE2eHost> StartDriver(RabbitMqVirtualHost vhost) => Start(vhost, null, driverOnly: true);

    public static async Task<BusFlowE2eHost> Start(RabbitMqVirtualHost? vhost, BusFlowStoreOptions? store, bool driverOnly = false)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        if (vhost is not null)
        {
            builder.Configuration.AddInMemoryCollection(vhost.BusFlowSettings());
        }

        builder.Services.AddSingleton<CompletionCounter>();
        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            if (driverOnly)
            {
                b.RunSaga = false;
                b.AddRemoteWorker(E2eShapes.Worker);
            }
            else
            {
                b.UseStore(store!).AddWorker<DemoStepHandler>(E2eShapes.Worker);
            }

            b.AddShapes();
        }, bus => bus.AddConsumer<E2eBusFlowSubscriber>().Endpoint(e =>
        {
            e.Name = "busflow-e2e-subscriber";
            e.PrefetchCount = 256;
            e.ConcurrentMessageLimit = E2eShapes.SubscriberConcurrency;
        }));
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(5));
        var host = builder.Build();
        await host.StartAsync();
        return new BusFlowE2eHost(host);
    }

    public async Task<ThroughputRun> RunAsync(string shape, int pipelines, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Counter.Reset();
        var starts = Enumerable.Range(0, pipelines).Select(_ => new StartPipeline { PipelineId = NewId.NextGuid(), Definition = shape, Input = E2eShapes.Input }).ToList();
        var start = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(starts, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (s, ct) =>
            await Bus.Publish(s, ct));
        await Counter.WaitAsync(pipelines, timeout, cancellationToken);
        var elapsed = Stopwatch.GetElapsedTime(start, Counter.LastFinished);
        // Events may trail the last PipelineCompleted of another pipeline a little: wait briefly for all of them.
        var expected = (long)pipelines * E2eShapes.BusFlowEvents(shape);
        for (var i = 0; i < 200 && Counter.Events < expected; i++)
        {
            await Task.Delay(10, cancellationToken);
        }

        return new ThroughputRun(pipelines, elapsed, Counter.Events, Counter.Failed);
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
