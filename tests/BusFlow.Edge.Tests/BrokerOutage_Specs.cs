using System.Diagnostics;
using System.Net;
using System.Text.Json;
using BusFlow.Store;
using Xunit.Abstractions;

namespace BusFlow.Edge.Tests;

/// <summary>The API while the broker is away: a clear 503 for commands, reads keep working, a repeat succeeds once it is back.</summary>
public sealed class When_the_broker_is_away(ITestOutputHelper output)
{
    [ServerFact]
    public async Task Should_answer_commands_with_503_keep_serving_reads_and_accept_the_repeat_once_it_is_back()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var settings = vhost.BusFlowSettings();
        settings["BusFlow:Store:Provider"] = "Postgres";
        settings["BusFlow:Store:ConnectionString"] = db.ConnectionString;
        settings["BusFlow:Store:ApplyMigrations"] = "true";
        settings["BusFlow:Edge:BrokerTimeout"] = "00:00:03";
        settings["Logging:LogLevel:Default"] = "Warning";
        await using var host = await RunningHost.StartAsync(settings);
        try
        {
            var before = await host.Http.StartAsync("demo", new { delayMs = 10, progressTicks = 1 });
            Assert.Equal("Completed", (await host.Http.WaitForEndAsync(before, TimeSpan.FromSeconds(60))).GetProperty("status").GetString());

            await vhost.RefuseConnectionsAsync();
            var clock = Stopwatch.StartNew();
            using (var refused = await host.Http.StartRawAsync("demo", new { delayMs = 10, progressTicks = 1 }, idempotencyKey: "while-away"))
            {
                var body = await refused.Content.ReadAsStringAsync();
                output.WriteLine($"start while the broker is away: {(int)refused.StatusCode} after {clock.ElapsedMilliseconds} ms: {body}");
                Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
                Assert.Equal("broker_unavailable", JsonDocument.Parse(body).RootElement.GetProperty("code").GetString());
                Assert.NotNull(refused.Headers.RetryAfter);
            }

            // Reads come from the store and keep working.
            var listed = await host.Http.GetJsonAsync("/api/pipelines");
            Assert.Contains(listed.GetProperty("pipelines").EnumerateArray(), p => p.GetProperty("pipelineId").GetGuid() == before);

            // The same request, repeated once the broker is back, starts the pipeline (once).
            await vhost.AcceptConnectionsAsync();
            Guid? started = null;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
            while (started is null)
            {
                using var repeat = await host.Http.StartRawAsync("demo", new { delayMs = 10, progressTicks = 1 }, idempotencyKey: "while-away");
                if (repeat.StatusCode == HttpStatusCode.Accepted)
                {
                    started = JsonDocument.Parse(await repeat.Content.ReadAsStringAsync()).RootElement.GetProperty("pipelineId").GetGuid();
                }
                else
                {
                    Assert.Equal(HttpStatusCode.ServiceUnavailable, repeat.StatusCode);
                    Assert.True(DateTime.UtcNow < deadline, "the broker came back but starts were still refused after 90 s");
                    await Task.Delay(1000);
                }
            }

            // 202 may come before the saga's own connection is back (StartWait); the start is on its way.
            while ((await host.Http.GetAsync($"/api/pipelines/{started}")).StatusCode == HttpStatusCode.NotFound)
            {
                Assert.True(DateTime.UtcNow < deadline, "the accepted start was not recorded within 90 s");
                await Task.Delay(500);
            }

            Assert.Equal("Completed", (await host.Http.WaitForEndAsync(started.Value, TimeSpan.FromSeconds(90))).GetProperty("status").GetString());
            Assert.Equal(started, await host.Http.StartAsync("demo", new { delayMs = 10, progressTicks = 1 }, idempotencyKey: "while-away"));
        }
        catch
        {
            output.WriteLine($"host:\n{host.Output}");
            throw;
        }
    }
}
