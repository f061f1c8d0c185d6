using System.Diagnostics;
using BusFlow.Contracts;
using BusFlow.IntegrationTests.Support;
using BusFlow.Store;
using BusFlow.Store.Internal;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace BusFlow.IntegrationTests;

/// <summary>
/// A child process running pipelines on RabbitMQ and the store is killed with SIGKILL at random
/// moments, many times; then it runs to the end. Nothing may be lost, doubled or applied twice.
/// </summary>
[Collection(RabbitMqCollection.Name)]
public sealed class When_the_process_is_killed_at_random_moments(ITestOutputHelper output)
{
    private const int Pipelines = 40;
    private const int Kills = 7;

    /// <summary>
    /// The child runs the saga and the worker in one process, so its steps run co-located (killed
    /// mid-step, their commands go the ordinary path after the restart), except in the last case.
    /// </summary>
    [ServerTheory]
    [InlineData(StoreProviderKind.Postgres, EventPublishMode.Individual, true)]
    [InlineData(StoreProviderKind.Sqlite, EventPublishMode.Individual, true)]
    [InlineData(StoreProviderKind.Postgres, EventPublishMode.Batched, true)]
    [InlineData(StoreProviderKind.Postgres, EventPublishMode.Individual, false)]
    public async Task Should_lose_nothing_record_nothing_twice_and_apply_each_effect_once(StoreProviderKind provider, EventPublishMode publishing, bool colocate)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var vhost = await RabbitMqVirtualHost.Create();
        await using (var context = CreateContext(db))
        {
            await context.Database.MigrateAsync();
            await context.Database.ExecuteSqlRawAsync("CREATE TABLE side_effects (pipeline_id VARCHAR(64) NOT NULL, step VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, item INTEGER NOT NULL)");
        }

        var events = new RecordedEvents();
        using var subscriber = await StartSubscriber(vhost, events);
        var seed = Guid.NewGuid().ToString("N");
        var random = new Random(42);
        var logs = Path.Combine(AppContext.BaseDirectory, "crash-logs", $"{provider}-{seed[..8]}");
        output.WriteLine($"child logs: {logs}");
        for (var kill = 0; kill < Kills; kill++)
        {
            using var log = new ChildProcessLog(Path.Combine(logs, $"child-{kill + 1}.log"));
            using var child = StartChild(provider, publishing, colocate, db, vhost, seed, log);
            var after = TimeSpan.FromMilliseconds(random.Next(500, 4500));
            await Task.Delay(after);
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
            log.Note($"SIGKILL after {after.TotalMilliseconds} ms");
            output.WriteLine($"kill {kill + 1}: SIGKILL after {after.TotalMilliseconds} ms; events logged so far: {await CountLogged(db)}, pipelines ended: {await CountTerminal(db)}; {Problems(log)}");
        }

        using (var log = new ChildProcessLog(Path.Combine(logs, "child-last.log")))
        using (var last = StartChild(provider, publishing, colocate, db, vhost, seed, log))
        {
            var started = Stopwatch.StartNew();
            var until = started.Elapsed + TimeSpan.FromMinutes(3);
            var report = TimeSpan.FromSeconds(15);
            int ended;
            while (((ended = await CountTerminal(db)) < Pipelines || await CountUndelivered(db) > 0) && started.Elapsed < until)
            {
                if (started.Elapsed > report)
                {
                    log.Note($"test: pipelines ended {ended}/{Pipelines}");
                    output.WriteLine($"last run, {started.Elapsed.TotalSeconds:0} s: pipelines ended: {ended}, events logged: {await CountLogged(db)}");
                    report += TimeSpan.FromSeconds(15);
                }

                await Task.Delay(250);
            }

            last.Kill(entireProcessTree: true);
            await last.WaitForExitAsync();
            log.Note("killed at the end of the last run");
            output.WriteLine($"last run: {started.Elapsed.TotalSeconds:0.0} s, pipelines ended: {await CountTerminal(db)}, events logged: {await CountLogged(db)}; {Problems(log)}; its log's tail:");
            foreach (var line in log.Tail(60))
            {
                output.WriteLine("  " + line);
            }
        }

        await using var verify = CreateContext(db);
        var ids = Enumerable.Range(0, Pipelines).Select(i => CrashTarget.PipelineId(seed, i)).ToList();
        var states = await verify.Pipelines.AsNoTracking().Where(p => ids.Contains(p.CorrelationId)).ToListAsync();
        Assert.Equal(Pipelines, states.Count);
        Assert.All(states, s => Assert.Equal(PipelineStatus.Completed, s.Status));

        var logged = await verify.Events.AsNoTracking().Where(e => ids.Contains(e.PipelineId)).ToListAsync();
        var effects = await ReadEffects(verify);
        foreach (var id in ids)
        {
            // Gapless and duplicate-free per pipeline.
            var seqs = logged.Where(e => e.PipelineId == id).Select(e => e.Seq).Order().ToList();
            Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);

            // One effect per step execution the saga recorded as completed, never two for one attempt.
            var completed = logged.Where(e => e.PipelineId == id && e.Type == nameof(StepCompleted))
                .Select(e => (StepCompleted)BusFlowJson.Event(e.Payload))
                .Where(e => e.StepName != "m" || e.ItemIndex is not null)
                .Select(e => (e.StepName, e.Attempt, e.ItemIndex ?? -1))
                .Order()
                .ToList();
            var applied = effects.Where(e => e.PipelineId == id.ToString()).Select(e => (e.Step, e.Attempt, e.Item)).Order().ToList();
            Assert.Equal(applied.Distinct().Count(), applied.Count);
            Assert.Equal(completed, applied);
        }

        // Every logged event reached a bus subscriber at least once.
        var until2 = DateTime.UtcNow.AddSeconds(30);
        while (logged.Any(e => !events.For(e.PipelineId).Any(r => r.Seq == e.Seq)) && DateTime.UtcNow < until2)
        {
            await Task.Delay(100);
        }

        Assert.All(logged, e => Assert.Contains(events.For(e.PipelineId), r => r.Seq == e.Seq && r.EventType == e.Type));
        output.WriteLine($"{logged.Count} events logged, {events.All().Count} received (duplicates included), {effects.Count} effects.");
    }

    private static Process StartChild(StoreProviderKind provider, EventPublishMode publishing, bool colocate, TestDatabase db, RabbitMqVirtualHost vhost, string seed, ChildProcessLog log)
    {
        var start = new ProcessStartInfo("dotnet", [typeof(CrashTarget).Assembly.Location, "crash-target"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            Environment =
            {
                ["BUSFLOW_CRASH_PROVIDER"] = provider.ToString(),
                ["BUSFLOW_CRASH_DB"] = db.ConnectionString,
                ["BUSFLOW_CRASH_VHOST"] = vhost.Name,
                ["BUSFLOW_CRASH_COUNT"] = Pipelines.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["BUSFLOW_CRASH_SEED"] = seed,
                ["BUSFLOW_CRASH_PUBLISHING"] = publishing.ToString(),
                ["BUSFLOW_CRASH_COLOCATE"] = colocate ? "true" : "false",
            },
        };
        log.Note("starting crash-target");
        var process = Process.Start(start)!;
        log.Follow(process);
        return process;
    }

    /// <summary>How many warnings and errors a child logged (its console lines start with the level).</summary>
    private static string Problems(ChildProcessLog log)
    {
        var lines = log.Lines();
        return $"child logged {lines.Count(l => l.Contains("warn:", StringComparison.Ordinal))} warnings, {lines.Count(l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("crit:", StringComparison.Ordinal))} errors ({Path.GetFileName(log.Path)})";
    }

    private static async Task<IHost> StartSubscriber(RabbitMqVirtualHost vhost, RecordedEvents events)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(vhost.BusFlowSettings());
        builder.Services.AddSingleton(events);
        builder.Services.AddBusFlow(builder.Configuration, b => b.RunSaga = false, bus => bus.AddConsumer<RecordingConsumer>());
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    private static BusFlowDbContext CreateContext(TestDatabase db)
    {
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString);
        return new BusFlowDbContext(options.Options);
    }

    private static async Task<int> CountTerminal(TestDatabase db)
    {
        await using var context = CreateContext(db);
        return await context.Pipelines.CountAsync(p => p.Status != PipelineStatus.Running);
    }

    private static async Task<int> CountLogged(TestDatabase db)
    {
        await using var context = CreateContext(db);
        return await context.Events.CountAsync();
    }

    private static async Task<int> CountUndelivered(TestDatabase db)
    {
        await using var context = CreateContext(db);
        var deliveredUpTo = await OutboxDelivery.DeliveredUpToAsync(context, CancellationToken.None);
        return await context.Events.CountAsync(e => e.Position == null || e.Position > deliveredUpTo) + await context.Outbox.CountAsync(o => o.DeliveredAt == null);
    }

    private static async Task<List<(string PipelineId, string Step, int Attempt, int Item)>> ReadEffects(BusFlowDbContext context)
    {
        var connection = context.Database.GetDbConnection();
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT pipeline_id, step, attempt, item FROM side_effects";
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(string, string, int, int)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetString(1), Convert.ToInt32(reader.GetValue(2), System.Globalization.CultureInfo.InvariantCulture), Convert.ToInt32(reader.GetValue(3), System.Globalization.CultureInfo.InvariantCulture)));
        }

        return rows;
    }
}
