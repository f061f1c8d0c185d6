using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Store;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>One BusFlow process (in this test process) on a real RabbitMQ virtual host and a real store.</summary>
public static class StoreOnRabbitMqHost
{
    public static async Task<IHost> Start(RabbitMqVirtualHost vhost, TestDatabase db, Action<BusFlowBuilder> configure, RecordedEvents? events = null, Action<BusFlowStoreOptions>? store = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Error);

        // Conflicting transitions of two saga processes are expected here; EF logs each as an error.
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore", LogLevel.None);
        builder.Configuration.AddInMemoryCollection(vhost.BusFlowSettings());
        if (events is not null)
        {
            builder.Services.AddSingleton(events);
        }

        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            b.UseStore(db.Options(o =>
            {
                o.DeliveryPollInterval = TimeSpan.FromMilliseconds(50);
                store?.Invoke(o);
            }));
            configure(b);
        }, bus =>
        {
            if (events is not null)
            {
                bus.AddConsumer<RecordingConsumer>();
            }
        });
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(5));
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    public static async Task<Guid> StartPipeline(this IHost host, string definition, object? input = null)
    {
        var id = NewId.NextGuid();
        await host.Services.GetRequiredService<IBus>().Publish(new StartPipeline
        {
            PipelineId = id,
            Definition = definition,
            Input = input is null ? null : JsonSerializer.SerializeToElement(input, JsonSerializerOptions.Web),
        });
        return id;
    }
}
