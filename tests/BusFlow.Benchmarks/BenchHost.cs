using System.Diagnostics;
using BusFlow.Contracts;
using BusFlow.Store;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Benchmarks;

/// <summary>Counts the pipeline events a bus subscriber received, and when the last one arrived.</summary>
public sealed class EventCounter
{
    private long _count;
    private long _completed;
    private long _last;

    public long Count => Interlocked.Read(ref _count);

    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Stopwatch timestamp of the latest receipt.</summary>
    public long LastReceived => Interlocked.Read(ref _last);

    public void Reset()
    {
        Interlocked.Exchange(ref _count, 0);
        Interlocked.Exchange(ref _completed, 0);
        Interlocked.Exchange(ref _last, 0);
    }

    public void Add(PipelineEvent e)
    {
        var now = Stopwatch.GetTimestamp();
        Interlocked.Increment(ref _count);
        if (e is PipelineCompleted)
        {
            Interlocked.Increment(ref _completed);
        }

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
    }
}

/// <summary>A bus subscriber to every pipeline event type (its own queue, bound to each event's exchange).</summary>
public sealed class CountingConsumer(EventCounter counter) : PipelineEventsConsumer
{
    protected override Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context)
    {
        counter.Add(pipelineEvent);
        return Task.CompletedTask;
    }
}

/// <summary>Settings of one benchmark run.</summary>
public sealed record BenchSettings
{
    public int Repetitions { get; init; } = 3;

    /// <summary>Pipelines started at once in the end-to-end scenario.</summary>
    public int Pipelines { get; init; } = 100;

    /// <summary>Progress events each pipeline's single step reports.</summary>
    public int ProgressPerStep { get; init; } = 50;

    /// <summary>How many "emit" steps run at once (the worker's concurrency).</summary>
    public int WorkerConcurrency { get; init; } = 64;

    /// <summary>Rows written per repetition by the store-direct and raw scenarios.</summary>
    public int Rows { get; init; } = 20_000;

    /// <summary>Rows per transaction in the store-direct and raw scenarios.</summary>
    public int Batch { get; init; } = 100;

    /// <summary>Concurrent writers in the store-direct and raw scenarios.</summary>
    public int Writers { get; init; } = 4;

    /// <summary>Pipelines the store-direct rows are spread over (round robin).</summary>
    public int Spread { get; init; } = 1000;

    /// <summary>BusFlowStoreOptions.DeliveryBatchSize; null keeps BusFlow's default.</summary>
    public int? DeliveryBatchSize { get; init; }

    /// <summary>BusFlowStoreOptions.DeliveryParallelism; null keeps BusFlow's default.</summary>
    public int? DeliveryParallelism { get; init; }

    /// <summary>Print the SQL commands each scenario sent, by kind (adds overhead: not for the figures).</summary>
    public bool Profile { get; init; }

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Edge: subscribers per system in the relay measurement.</summary>
    public int EdgeClients { get; init; } = 1000;

    /// <summary>Edge: events handed over at once in the throughput measurement (below the edge's 1,024-event buffer per connection).</summary>
    public int EdgeBurst { get; init; } = 500;

    /// <summary>Edge: events per second in the latency measurement.</summary>
    public double EdgeRate { get; init; } = 20;

    /// <summary>Edge: events in the latency measurement.</summary>
    public int EdgePacedEvents { get; init; } = 200;

    /// <summary>Edge: pipelines the events go round.</summary>
    public int EdgePipelines { get; init; } = 100;

    /// <summary>Edge: idle connections per system for the memory and broadcast measurement.</summary>
    public int EdgeIdleClients { get; init; } = 10_000;

    /// <summary>Edge: single-event broadcasts to the idle connections.</summary>
    public int EdgeBroadcasts { get; init; } = 5;

    /// <summary>Edge: seconds to keep the idle connections open before the broadcasts, so that a profiler can look at the server.</summary>
    public int EdgeIdleHold { get; init; }
}

/// <summary>
/// A real BusFlow process: generic host, AddBusFlow on RabbitMQ (its own virtual host) with the
/// PostgreSQL store, a pipeline "emit" of one step that reports N progress events, and a counting
/// subscriber of every event type.
/// </summary>
public sealed class BenchHost : IAsyncDisposable
{
    public const string Pipeline = "emit";

    private readonly IHost _host;

    private BenchHost(IHost host, BusFlowStoreOptions store)
    {
        _host = host;
        Store = store;
    }

    public BusFlowStoreOptions Store { get; }

    public IServiceProvider Services => _host.Services;

    public IBus Bus => _host.Services.GetRequiredService<IBus>();

    public EventCounter Counter => _host.Services.GetRequiredService<EventCounter>();

    public IDbContextFactory<BusFlowDbContext> Databases => _host.Services.GetRequiredService<IDbContextFactory<BusFlowDbContext>>();

    /// <summary>Signalled on Ctrl+C or SIGTERM (the host's console lifetime): scenarios stop waiting, the database and virtual host are removed.</summary>
    public CancellationToken Stopping => _host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;

    public static async Task<BenchHost> Start(BenchDatabase database, RabbitMqVirtualHost vhost, BenchSettings settings)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        // EF logs the first look for its migrations history table in a new database as an error.
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        builder.Configuration.AddInMemoryCollection(vhost.BusFlowSettings());
        builder.Services.AddSingleton<EventCounter>();
        var store = new BusFlowStoreOptions
        {
            Provider = StoreProviderKind.Postgres,
            ConnectionString = database.ConnectionString,
            ApplyMigrations = true,
        };
        if (settings.DeliveryBatchSize is { } batch)
        {
            store.DeliveryBatchSize = batch;
        }

        if (settings.DeliveryParallelism is { } parallelism)
        {
            store.DeliveryParallelism = parallelism;
        }

        var progress = settings.ProgressPerStep;
        builder.Services.AddBusFlow(builder.Configuration, b => b
            .UseStore(store)
            .AddWorker(Pipeline, async ctx =>
            {
                for (var i = 1; i <= progress; i++)
                {
                    await ctx.ReportProgressAsync(100.0 * i / progress, "tick");
                }

                return StepResult.Success(new { ticks = progress });
            }, settings.WorkerConcurrency)
            .AddPipeline(Pipeline, p => p.Step(Pipeline)),
            bus => bus.AddConsumer<CountingConsumer>().Endpoint(e =>
            {
                e.Name = "busflow-bench-subscriber";
                e.PrefetchCount = 256;
            }));
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(5));
        var host = builder.Build();
        await host.StartAsync();
        return new BenchHost(host, store);
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
