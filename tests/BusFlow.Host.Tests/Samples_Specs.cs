using System.Net;
using System.Text.Json;

namespace BusFlow.Host.Tests;

/// <summary>The sample pipelines through HTTP and WebSocket on a host started the README way.</summary>
public sealed class When_running_the_samples(RunningHostFixture fixture) : IClassFixture<RunningHostFixture>
{
    private RunningHost Host => fixture.Host;

    private async Task<List<JsonElement>> RunAsync(string definition, object input, Func<WsClient, JsonElement, Task>? onEvent = null)
    {
        await using var ws = await WsClient.ConnectAsync(Host.WebSocketUri);
        var id = await Host.Http.StartAsync(definition, input);
        await ws.SubscribeAsync(id.ToString(), after: 0);
        var events = new List<JsonElement>();
        while (events.Count == 0 || !events[^1].IsTerminal())
        {
            var e = (await ws.ReceiveAsync(TimeSpan.FromSeconds(30)))!.Value;
            events.Add(e);
            if (onEvent is not null)
            {
                await onEvent(ws, e);
            }
        }

        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq()));
        return events;
    }

    [Fact]
    public async Task Should_run_demo_with_a_flaky_step_and_fail_it_with_a_failing_one()
    {
        var flaky = await RunAsync("demo", new { delayMs = 10, progressTicks = 2, failStep = (string?)null, flakyStep = "enrich" });
        Assert.Equal("PipelineCompleted", flaky[^1].Type());
        Assert.Contains(flaky, e => e.Type() == "StepFailed" && e.GetProperty("stepName").GetString() == "enrich" && e.GetProperty("willRetry").GetBoolean());
        // Two progress reports per attempt: four steps once, enrich twice.
        Assert.Equal(12, flaky.Count(e => e.Type() == "StepProgress"));

        var failing = await RunAsync("demo", new { delayMs = 10, progressTicks = 0, failStep = "merge" });
        Assert.Equal("PipelineFailed", failing[^1].Type());
        Assert.Equal("merge", failing[^1].GetProperty("failedStep").GetString());
        Assert.DoesNotContain(failing, e => e.Type() == "StepStarted" && e.GetProperty("stepName").GetString() == "report");
    }

    [Fact]
    public async Task Should_count_words_with_map_reduce()
    {
        var events = await RunAsync("wordcount", new { texts = new[] { "a b", "b c", "C a b" } });
        var outputs = events[^1].GetProperty("outputs").GetProperty("reduce");
        Assert.Equal(2, outputs.GetProperty("a").GetInt32());
        Assert.Equal(3, outputs.GetProperty("b").GetInt32());
        Assert.Equal(2, outputs.GetProperty("c").GetInt32());
        Assert.Equal(3, events.Count(e => e.Type() == "StepCompleted" && e.GetProperty("stepName").GetString() == "count" && e.GetProperty("itemIndex").ValueKind == JsonValueKind.Number));
    }

    [Fact]
    public async Task Should_post_each_ledger_entry_once_with_its_step()
    {
        var events = await RunAsync("ledger", new { amount = 7 });
        Assert.Equal("PipelineCompleted", events[^1].Type());
        var id = events[^1].PipelineId();

        // The enlisted rows committed with the steps' outcomes, in the store's own database.
        await using var connection = new Microsoft.Data.Sqlite.SqliteConnection(Host.StoreConnectionString);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT step, attempt, amount FROM busflow_sample_ledger WHERE pipeline_id = $id ORDER BY step";
        command.Parameters.AddWithValue("$id", id.ToString());
        var rows = new List<(string Step, long Attempt, long Amount)>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2)));
            }
        }

        Assert.Equal([("credit", 1L, 7L), ("debit", 1L, -7L)], rows);
    }

    [Fact]
    public async Task Should_wait_for_an_approval_and_end_as_answered()
    {
        var rejected = await RunAsync("approval", new { title = "no" }, async (_, e) =>
        {
            if (e.Type() == "StepSuspended")
            {
                using var answer = await Host.Http.PostJsonAsync($"/api/pipelines/{e.PipelineId()}/actions/{e.GetProperty("suspendId").GetGuid()}", """{"approved":false}""");
                Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode);
            }
        });
        Assert.Equal("PipelineFailed", rejected[^1].Type());
        Assert.Equal("rejected", rejected[^1].GetProperty("error").GetProperty("kind").GetString());

        var approved = await RunAsync("approval", new { title = "yes" }, async (_, e) =>
        {
            if (e.Type() == "StepSuspended")
            {
                using var answer = await Host.Http.PostJsonAsync($"/api/pipelines/{e.PipelineId()}/actions/{e.GetProperty("suspendId").GetGuid()}", """{"approved":true}""");
                Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode);
            }
        });
        Assert.Equal("PipelineCompleted", approved[^1].Type());
        Assert.Contains(approved, e => e.Type() == "StepCompleted" && e.GetProperty("stepName").GetString() == "publish");
    }
}
