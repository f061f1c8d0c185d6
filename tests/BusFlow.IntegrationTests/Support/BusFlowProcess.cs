using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>A BusFlow process in the test's own process, on the settings given (a RabbitMQ virtual host's, usually).</summary>
public static class BusFlowProcess
{
    /// <summary>
    /// Builds and starts it; with <paramref name="events"/> it records the events it receives (one
    /// process only: they would share the queue); with <paramref name="logs"/> its log lines go there
    /// instead of the console.
    /// </summary>
    public static async Task<IHost> StartAsync(Dictionary<string, string?> settings, Action<BusFlowBuilder> configure, RecordedEvents? events = null, ILoggerProvider? logs = null)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(settings);
        if (logs is not null)
        {
            builder.Logging.ClearProviders().AddProvider(logs);
        }

        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        if (events is not null)
        {
            builder.Services.AddSingleton(events);
        }

        builder.Services.AddBusFlow(builder.Configuration, configure, bus =>
        {
            if (events is not null)
            {
                bus.AddConsumer<RecordingConsumer>();
            }
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }
}
