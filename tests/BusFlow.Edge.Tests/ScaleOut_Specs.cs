using BusFlow.Store;
using Xunit.Abstractions;

namespace BusFlow.Edge.Tests;

/// <summary>Two host processes on one real RabbitMQ and one real PostgreSQL behave as one service.</summary>
public sealed class When_two_edge_nodes_share_a_broker_and_a_database(ITestOutputHelper output)
{
    [ServerFact]
    public async Task Should_show_on_one_node_what_was_started_on_the_other_and_resume_there_after_losing_it()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        settings["BusFlow:Store:Provider"] = "Postgres";
        settings["BusFlow:Store:ConnectionString"] = db.ConnectionString;
        settings["BusFlow:Store:ApplyMigrations"] = "true";
        settings["Logging:LogLevel:Default"] = "Warning";

        await using var a = await RunningHost.StartAsync(new(settings));
        await using var b = await RunningHost.StartAsync(new(settings));
        try
        {
            // Started through A, watched live on B.
            await using (var watcher = await WsClient.ConnectAsync(b.WebSocketUri))
            {
                await watcher.SubscribeAsync("*");
                var id = await a.Http.StartAsync("demo", new { delayMs = 20, progressTicks = 2 });
                var events = (await watcher.ReceiveUntilAsync(e => e.PipelineId() == id && e.IsTerminal(), TimeSpan.FromSeconds(60)))
                    .Where(e => e.PipelineId() == id).ToList();
                Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq()));
                Assert.Equal("PipelineCompleted", events[^1].Type());
            }

            // Watching on A, A dies; the client resumes on B from the last seq it saw.
            var longRun = await b.Http.StartAsync("demo", new { delayMs = 400, progressTicks = 3 });
            await using var onA = await WsClient.ConnectAsync(a.WebSocketUri);
            await onA.SubscribeAsync(longRun.ToString(), after: 0);
            var seen = await onA.ReceiveUntilAsync(e => e.Seq() >= 5, TimeSpan.FromSeconds(60));
            await a.KillAsync();

            await using var onB = await WsClient.ConnectAsync(b.WebSocketUri);
            await onB.SubscribeAsync(longRun.ToString(), after: seen[^1].Seq());
            var rest = await onB.ReceiveUntilAsync(e => e.IsTerminal(), TimeSpan.FromSeconds(90));
            var seqs = seen.Concat(rest).Select(e => e.Seq()).ToList();
            Assert.Equal(Enumerable.Range(1, seqs.Count).Select(i => (long)i), seqs);
            Assert.Equal("PipelineCompleted", rest[^1].Type());
        }
        catch
        {
            output.WriteLine($"node A:\n{a.Output}\nnode B:\n{b.Output}");
            throw;
        }
    }
}
