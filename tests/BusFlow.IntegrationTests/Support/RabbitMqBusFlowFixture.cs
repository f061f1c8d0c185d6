using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Host.Samples;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// One BusFlow process on a real RabbitMQ (its own virtual host) for a whole test collection: the
/// shipped sample pipelines plus test pipelines, and a bus subscriber recording every event.
/// </summary>
public sealed class RabbitMqBusFlowFixture : IAsyncLifetime
{
    private RabbitMqVirtualHost? _vhost;
    private IHost? _host;

    public RecordedEvents Events { get; } = new();

    public IBus Bus => _host!.Services.GetRequiredService<IBus>();

    public TestWorkerProbe Probe { get; } = new();

    public async Task InitializeAsync()
    {
        if (TestServers.OptedOut)
        {
            return;
        }

        _vhost = await RabbitMqVirtualHost.Create();
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(_vhost.BusFlowSettings());
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(Events);
        builder.Services.AddSingleton(Probe);
        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            SamplePipelines.Register(b);
            TestPipelines.Register(b, Probe);
        }, bus =>
        {
            bus.AddConsumer<RecordingConsumer>();
            bus.AddConsumer<TestPipelines.LookUpPriceConsumer>();
        });
        _host = builder.Build();
        await _host.StartAsync();
    }

    public async Task<Guid> Start(string definition, object? input = null, IReadOnlyDictionary<string, string>? tags = null)
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

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.StopAsync();
            _host.Dispose();
        }

        if (_vhost is not null)
        {
            await _vhost.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class RabbitMqCollection : ICollectionFixture<RabbitMqBusFlowFixture>
{
    public const string Name = "RabbitMQ";
}
