using System.Text.Json;
using BusFlow.Contracts;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Tests.Support;

/// <summary>A real generic host running BusFlow on the store, on the in-memory transport, with a bus subscriber recording events.</summary>
public sealed class StoreHost : IAsyncDisposable
{
    private readonly IHost _host;

    private StoreHost(IHost host, RecordedEvents events)
    {
        _host = host;
        Events = events;
    }

    public RecordedEvents Events { get; }

    public IServiceProvider Services => _host.Services;

    public IBus Bus => _host.Services.GetRequiredService<IBus>();

    public PipelineEventReader Reader => _host.Services.GetRequiredService<PipelineEventReader>();

    /// <summary>The store's database contexts, as BusFlow takes them.</summary>
    public IDbContextFactory<BusFlowDbContext> Databases => _host.Services.GetRequiredService<IDbContextFactory<BusFlowDbContext>>();

    public static async Task<StoreHost> Start(BusFlowStoreOptions store, Action<BusFlowBuilder> configure, RecordedEvents? events = null, Action<IBusRegistrationConfigurator>? consumers = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["BusFlow:Transport"] = "InMemory" });
        var recorded = events ?? new RecordedEvents();
        builder.Services.AddSingleton(recorded);
        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            b.UseStore(store);
            configure(b);
        }, bus =>
        {
            bus.AddConsumer<RecordingConsumer>();
            consumers?.Invoke(bus);
        });

        // Tests stop hosts with steps still running; do not wait long for them to drain.
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(2));
        var host = builder.Build();
        await host.StartAsync();
        return new StoreHost(host, recorded);
    }

    /// <summary>A host whose one pipeline, <c>one</c>, has one step that succeeds at once (worker <c>w</c>).</summary>
    public static Task<StoreHost> StartWithOneStep(BusFlowStoreOptions store) =>
        Start(store, b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("one", p => p.Then("w")));

    public async Task<Guid> StartPipeline(string definition, object? input = null, Dictionary<string, string>? tags = null)
    {
        var id = NewId.NextGuid();
        await Bus.Publish(new StartPipeline
        {
            PipelineId = id,
            Definition = definition,
            Input = input is null ? null : JsonSerializer.SerializeToElement(input, JsonSerializerOptions.Web),
            Tags = tags,
        });
        return id;
    }

    /// <summary>Starts a pipeline and waits until it completed (fails the test if it ended otherwise).</summary>
    public async Task<Guid> RunPipeline(string definition, object? input = null, TimeSpan? timeout = null)
    {
        var id = await StartPipeline(definition, input);
        Assert.IsType<PipelineCompleted>(await Events.WaitForEnd(id, timeout));
        return id;
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
