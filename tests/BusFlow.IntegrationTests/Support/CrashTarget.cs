using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Store;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// The process the crash tests kill: BusFlow on RabbitMQ and the store, running the <c>crash</c>
/// pipeline, whose every step writes one side-effect row enlisted in its outcome's transaction.
/// On each start it (re)publishes the starts of the same pipelines; the saga ignores repeats.
/// </summary>
public static class CrashTarget
{
    public const string Definition = "crash";

    public static readonly string[] Steps = ["a", "b", "c", "m", "d"];

    public static Guid PipelineId(string seed, int index) => new(SHA256.HashData(Encoding.UTF8.GetBytes($"{seed}/{index}")).AsSpan(0, 16));

    public static void Register(BusFlowBuilder b) => b
        .AddWorker("crash-step", async ctx =>
        {
            await Task.Delay(Random.Shared.Next(5, 60), ctx.CancellationToken);
            ctx.Enlist(async commit =>
            {
                await using var insert = commit.Connection!.CreateCommand();
                insert.Transaction = commit.Transaction;
                insert.CommandText = $"INSERT INTO side_effects (pipeline_id, step, attempt, item) VALUES ('{ctx.PipelineId}', '{ctx.StepName}', {ctx.Attempt}, {ctx.ItemIndex ?? -1})";
                await insert.ExecuteNonQueryAsync(commit.CancellationToken);
            });
            return StepResult.Success(new { ctx.StepName, ctx.ItemIndex });
        }, concurrency: 16)
        .AddPipeline(Definition, p => p
            .Step("a", s => s.Worker("crash-step"))
            .Step("b", s => s.Worker("crash-step").After("a"))
            .Step("c", s => s.Worker("crash-step").After("a"))
            // a's completion starts b, c and six items: nine events in one transition, whose
            // multi-row INSERT is killed mid-way too.
            .Map("m", s => s.Worker("crash-step").Over("input.items").MaxParallelism(6).After("a"))
            .Step("d", s => s.Worker("crash-step").After("b", "c", "m")));

    public static async Task<int> RunAsync()
    {
        var provider = Enum.Parse<StoreProviderKind>(Environment.GetEnvironmentVariable("BUSFLOW_CRASH_PROVIDER")!);
        var connection = Environment.GetEnvironmentVariable("BUSFLOW_CRASH_DB")!;
        var vhost = Environment.GetEnvironmentVariable("BUSFLOW_CRASH_VHOST")!;
        var count = int.Parse(Environment.GetEnvironmentVariable("BUSFLOW_CRASH_COUNT")!, System.Globalization.CultureInfo.InvariantCulture);
        var seed = Environment.GetEnvironmentVariable("BUSFLOW_CRASH_SEED")!;
        var publishing = Enum.Parse<EventPublishMode>(Environment.GetEnvironmentVariable("BUSFLOW_CRASH_PUBLISHING") ?? nameof(EventPublishMode.Individual));
        var colocate = Environment.GetEnvironmentVariable("BUSFLOW_CRASH_COLOCATE") != "false";

        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        // The test copies this output into a file per child and shows the last child's tail: BusFlow's
        // own information (store ready, outbox rounds failing and resuming) and the diagnostics (lock
        // waits, failed commands with their SQLite codes, the thread pool) explain a stall.
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("BusFlow", LogLevel.Information);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Migrations", LogLevel.Information);
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.UseUtcTimestamp = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Configuration.AddInMemoryCollection(RabbitMqVirtualHost.Settings(vhost));
        builder.Services.AddSingleton<CrashDiagnostics>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<CrashDiagnostics>());
        builder.Services.ConfigureDbContext<BusFlowDbContext>((sp, o) => o.AddInterceptors(sp.GetRequiredService<CrashDiagnostics>().CreateInterceptor()));
        builder.Services.AddBusFlow(builder.Configuration, b =>
        {
            b.UseStore(new BusFlowStoreOptions { Provider = provider, ConnectionString = connection, ApplyMigrations = true, DeliveryPollInterval = TimeSpan.FromMilliseconds(50), EventPublishing = publishing, ColocateSteps = colocate });
            Register(b);
        });
        using var host = builder.Build();
        await host.StartAsync();
        var bus = host.Services.GetRequiredService<IBus>();
        for (var i = 0; i < count; i++)
        {
            await bus.Publish(new StartPipeline
            {
                PipelineId = PipelineId(seed, i),
                Definition = Definition,
                Input = JsonSerializer.SerializeToElement(new { items = new[] { 1, 2, 3, 4, 5, 6 } }),
            });
        }

        Console.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} crash-target: started, {count} starts published");
        await host.WaitForShutdownAsync();
        return 0;
    }
}
