using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Host.Samples;
using BusFlow.Store;
using MassTransit;

namespace BusFlow.Host;

/// <summary>
/// <c>run</c>: runs one sample pipeline end to end in this process and prints its events as JSON lines
/// (exit 0 when it completes). <c>--migrate</c> applies the store's migrations and exits.
/// </summary>
internal static class ConsoleRun
{
    public static async Task<int> RunAsync(string[] args, bool migrateOnly)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });
        var pipeline = builder.Configuration["pipeline"] ?? "demo";
        var input = builder.Configuration["input"] ?? """{"delayMs":50,"progressTicks":2,"failStep":null,"flakyStep":"enrich"}""";
        builder.Services.AddSingleton<ConsoleEventPrinter>();
        builder.Services.AddBusFlow(builder.Configuration, busflow =>
        {
            busflow.UseStore(builder.Configuration, store => store.ApplyMigrations = migrateOnly ? true : store.ApplyMigrations);
            SamplePipelines.Register(busflow);
            busflow.Services.AddSingleton<IPipelineObserver>(sp => sp.GetRequiredService<ConsoleEventPrinter>());
        });

        using var host = builder.Build();
        await host.StartAsync();
        if (migrateOnly)
        {
            // The store applied its migrations while starting.
            await host.StopAsync();
            return 0;
        }

        var printer = host.Services.GetRequiredService<ConsoleEventPrinter>();
        var id = NewId.NextGuid();
        var finished = printer.WaitForEnd(id);
        await host.Services.GetRequiredService<IBus>().Publish(new StartPipeline
        {
            PipelineId = id,
            Definition = pipeline,
            Input = JsonDocument.Parse(input).RootElement,
            Tags = new Dictionary<string, string> { ["source"] = "busflow-host" },
        });
        var last = await finished.WaitAsync(TimeSpan.FromMinutes(5));
        await host.StopAsync();
        return last is PipelineCompleted ? 0 : 1;
    }
}
