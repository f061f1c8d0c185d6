using System.Diagnostics;
using MassTransit;
using MassTransit.Courier.Contracts;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Benchmarks;

/// <summary>What each step of the Courier baseline gets: the same input the BusFlow steps get.</summary>
public sealed record CourierStepArguments
{
    public int DelayMs { get; init; }

    public int ProgressTicks { get; init; }
}

/// <summary>
/// The Courier twin of the benchmark's <c>demo-step</c> worker: no waiting, returns the same small
/// result (step, attempt, time), which travels on as a routing-slip variable the way a BusFlow
/// step's output is kept for the steps that consume it.
/// </summary>
public sealed class CourierStepActivity : IExecuteActivity<CourierStepArguments>
{
    public Task<ExecutionResult> Execute(ExecuteContext<CourierStepArguments> context) =>
        Task.FromResult(context.CompletedWithVariables(new Dictionary<string, object>
        {
            [context.ActivityName] = new { step = context.ActivityName, attempt = 1, at = DateTimeOffset.UtcNow },
        }));
}

/// <summary>
/// Counts routing slips that completed or faulted and every routing-slip event received: MassTransit's
/// own way to "run steps and emit events", consumed on its own queue the way a BusFlow bus subscriber is.
/// </summary>
public sealed class CourierEventCounter :
    IConsumer<RoutingSlipCompleted>,
    IConsumer<RoutingSlipFaulted>,
    IConsumer<RoutingSlipActivityCompleted>,
    IConsumer<RoutingSlipActivityFaulted>
{
    private readonly CompletionCounter _counter;

    public CourierEventCounter(CompletionCounter counter) => _counter = counter;

    public Task Consume(ConsumeContext<RoutingSlipCompleted> context)
    {
        _counter.Add(finished: true, failed: false);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<RoutingSlipFaulted> context)
    {
        _counter.Add(finished: true, failed: true);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<RoutingSlipActivityCompleted> context)
    {
        _counter.Add(finished: false, failed: false);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<RoutingSlipActivityFaulted> context)
    {
        _counter.Add(finished: false, failed: false);
        return Task.CompletedTask;
    }
}

/// <summary>
/// A MassTransit process running the pipelines as Courier routing slips: one execute activity
/// (<see cref="CourierStepActivity"/>) on its own queue with the BusFlow worker's concurrency, and a
/// subscriber of the routing-slip events. No database: Courier keeps nothing but the messages in flight.
/// A routing slip is sequential, so the <c>demo</c> DAG runs as its topological order fetch, clean, enrich, merge, report.
/// </summary>
public sealed class CourierHost : IThroughputSystem
{
    public const string ActivityQueue = "courier-bench-step";

    private static readonly Dictionary<string, string[]> Itineraries = new(StringComparer.Ordinal)
    {
        [E2eShapes.Sequential] = E2eShapes.SequentialSteps,
        [E2eShapes.Demo] = ["fetch", "clean", "enrich", "merge", "report"],
    };

    private readonly IHost _host;

    private CourierHost(IHost host) => _host = host;

    public string Name => "Courier";

    private IBus Bus => _host.Services.GetRequiredService<IBus>();

    private CompletionCounter Counter => _host.Services.GetRequiredService<CompletionCounter>();

    /// <summary>On the in-memory transport, or on RabbitMQ when <paramref name="vhost"/> is given.</summary>
    public static async Task<CourierHost> Start(RabbitMqVirtualHost? vhost, int concurrency)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton<CompletionCounter>();
        builder.Services.AddMassTransit(x =>
        {
            x.DisableUsageTelemetry();
            x.AddExecuteActivity<CourierStepActivity, CourierStepArguments>().Endpoint(e =>
            {
                e.Name = ActivityQueue;
                e.PrefetchCount = concurrency;
                e.ConcurrentMessageLimit = concurrency;
            });
            x.AddConsumer<CourierEventCounter>().Endpoint(e =>
            {
                e.Name = "courier-bench-subscriber";
                e.PrefetchCount = 256;
                e.ConcurrentMessageLimit = E2eShapes.SubscriberConcurrency;
            });
            if (vhost is null)
            {
                x.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
            }
            else
            {
                var settings = vhost.BusFlowSettings();
                x.UsingRabbitMq((context, cfg) =>
                {
                    cfg.Host(settings["BusFlow:RabbitMq:Host"], ushort.Parse(settings["BusFlow:RabbitMq:Port"]!, System.Globalization.CultureInfo.InvariantCulture), vhost.Name, h =>
                    {
                        h.Username(settings["BusFlow:RabbitMq:Username"]!);
                        h.Password(settings["BusFlow:RabbitMq:Password"]!);
                    });
                    cfg.ConfigureEndpoints(context);
                });
            }
        });
        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StopTimeout = TimeSpan.FromSeconds(5);
        });
        builder.Configuration.AddInMemoryCollection([]);
        var host = builder.Build();
        await host.StartAsync();
        return new CourierHost(host);
    }

    public async Task<ThroughputRun> RunAsync(string shape, int pipelines, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var steps = Itineraries[shape];
        var address = new Uri("queue:" + ActivityQueue);
        Counter.Reset();
        var slips = Enumerable.Range(0, pipelines).Select(_ =>
        {
            var slip = new RoutingSlipBuilder(NewId.NextGuid());
            foreach (var step in steps)
            {
                slip.AddActivity(step, address);
            }

            slip.AddVariable(nameof(CourierStepArguments.DelayMs), 0);
            slip.AddVariable(nameof(CourierStepArguments.ProgressTicks), 0);
            return slip.Build();
        }).ToList();
        var start = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(slips, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (slip, ct) =>
            await Bus.Execute(slip, ct));
        await Counter.WaitAsync(pipelines, timeout, cancellationToken);
        return new ThroughputRun(pipelines, Stopwatch.GetElapsedTime(start, Counter.LastFinished), Counter.Events, Counter.Failed);
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
