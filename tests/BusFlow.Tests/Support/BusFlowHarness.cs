using System.Text.Json;
using BusFlow.Contracts;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.Tests.Support;

/// <summary>MassTransit's test harness on the in-memory transport, with BusFlow and an event recorder.</summary>
public sealed class BusFlowHarness : IAsyncDisposable
{
    private readonly ServiceProvider _provider;

    private BusFlowHarness(ServiceProvider provider)
    {
        _provider = provider;
        Harness = provider.GetRequiredService<ITestHarness>();
        Events = provider.GetRequiredService<RecordedEvents>();
    }

    public ITestHarness Harness { get; }

    public RecordedEvents Events { get; }

    public IServiceProvider Services => _provider;

    public ISagaStateMachineTestHarness<PipelineStateMachine, PipelineState> Saga =>
        Harness.GetSagaStateMachineHarness<PipelineStateMachine, PipelineState>();

    public static async Task<BusFlowHarness> Start(Action<BusFlowBuilder> configure, Action<IBusRegistrationConfigurator>? bus = null)
    {
        var services = new ServiceCollection();
        services.AddSingleton<RecordedEvents>();
        services.AddMassTransitTestHarness(x =>
        {
            x.AddBusFlow(configure);
            x.AddConsumer<RecordingConsumer>();
            bus?.Invoke(x);
            x.UsingInMemory((context, cfg) =>
            {
                cfg.ConfigureBusFlowEndpoints(context);
                cfg.ConfigureEndpoints(context);
            });
        });
        services.Configure<TestHarnessOptions>(o => o.TestTimeout = TimeSpan.FromSeconds(60));
        var harness = new BusFlowHarness(services.BuildServiceProvider(true));
        await harness.Harness.Start();
        return harness;
    }

    public async Task<Guid> StartPipeline(string definition, object? input = null, IReadOnlyDictionary<string, string>? tags = null)
    {
        var id = NewId.NextGuid();
        await Harness.Bus.Publish(new StartPipeline
        {
            PipelineId = id,
            Definition = definition,
            Input = input is null ? null : JsonSerializer.SerializeToElement(input, JsonSerializerOptions.Web),
            Tags = tags,
        });
        return id;
    }

    public PipelineState? State(Guid pipelineId) =>
        Saga.Sagas.Contains(pipelineId);

    public async ValueTask DisposeAsync()
    {
        await Harness.Stop();
        await _provider.DisposeAsync();
    }
}
