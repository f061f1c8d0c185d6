using System.Text.Json;
using BusFlow;
using BusFlow.Contracts;
using BusFlow.Host;
using BusFlow.Host.Samples;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

// Runs one sample pipeline end to end on the configured transport (in-memory by default) and prints its events.
var builder = Host.CreateApplicationBuilder(args);
var pipeline = builder.Configuration["pipeline"] ?? "demo";
var input = builder.Configuration["input"] ?? """{"delayMs":50,"progressTicks":2,"failStep":null,"flakyStep":"enrich"}""";
builder.Services.AddSingleton<ConsoleEventPrinter>();
builder.Services.AddBusFlow(builder.Configuration, busflow =>
{
    SamplePipelines.Register(busflow);
    busflow.Services.AddSingleton<IPipelineObserver>(sp => sp.GetRequiredService<ConsoleEventPrinter>());
});

using var host = builder.Build();
await host.StartAsync();
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
