using System.Net;
using BusFlow.Client;
using BusFlow.Contracts;

namespace BusFlow.Host.Tests;

/// <summary>The .NET client against a real host process, including one stopped and restarted mid-watch.</summary>
public sealed class When_a_service_uses_the_client
{
    [Fact]
    public async Task Should_keep_watching_across_a_host_restart_without_duplicates_or_gaps()
    {
        await using var host = await RunningHost.StartAsync();
        using var client = new BusFlowClient(new BusFlowClientOptions { BaseAddress = host.BaseUri, MaxReconnectDelay = TimeSpan.FromSeconds(1) });
        var id = await client.StartAsync("demo", new { delayMs = 400, progressTicks = 2 });
        var seen = new List<PipelineEvent>();
        var restarted = false;
        await foreach (var e in client.WatchAsync(id).WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(120)).Token))
        {
            seen.Add(e);
            if (!restarted && e is StepCompleted { StepName: "fetch" })
            {
                restarted = true;
                await host.KillAsync();
                await Task.Delay(500);
                await host.StartAgainAsync();
            }
        }

        Assert.True(restarted);
        Assert.Equal(Enumerable.Range(1, seen.Count).Select(i => (long)i), seen.Select(e => e.Seq));
        Assert.IsType<PipelineCompleted>(seen[^1]);
        Assert.Equal("Completed", (await client.GetStatusAsync(id)).Status);
    }

    [Fact]
    public async Task Should_start_answer_cancel_read_status_and_report_problems_by_code()
    {
        await using var host = await RunningHost.StartAsync();
        using var client = new BusFlowClient(host.BaseUri);

        var approval = await client.StartAsync("approval", new { title = "client" }, new Dictionary<string, string> { ["who"] = "client-spec" });
        var events = new List<PipelineEvent>();
        await foreach (var e in client.WatchAsync(approval))
        {
            events.Add(e);
            if (e is StepSuspended suspended)
            {
                await client.AnswerAsync(approval, suspended.SuspendId, new { approved = false }, idempotencyKey: "no");
                await client.AnswerAsync(approval, suspended.SuspendId, new { approved = false }, idempotencyKey: "no");
            }
        }

        var failed = Assert.IsType<PipelineFailed>(events[^1]);
        Assert.Equal("rejected", failed.Error.Kind);
        Assert.Equal("client-spec", failed.Tags["who"]);

        var hold = await client.StartAsync("demo", new { delayMs = 10_000, progressTicks = 1 });
        await client.CancelAsync(hold);
        var last = await client.WatchAsync(hold).LastAsync();
        Assert.IsType<PipelineCancelled>(last);

        var finished = await Assert.ThrowsAsync<BusFlowApiException>(() => client.CancelAsync(hold));
        Assert.Equal((HttpStatusCode.Conflict, "pipeline_finished"), (finished.Status, finished.Code));
        var unknown = await Assert.ThrowsAsync<BusFlowApiException>(() => client.StartAsync("nope"));
        Assert.Equal("unknown_definition", unknown.Code);
        Assert.Contains("demo", unknown.Message, StringComparison.Ordinal);
        var missing = await Assert.ThrowsAsync<BusFlowApiException>(() => client.GetStatusAsync(Guid.NewGuid()));
        Assert.Equal(HttpStatusCode.NotFound, missing.Status);

        // Resume from a seq: only what comes after.
        var tail = await client.WatchAsync(approval, afterSeq: events.Count - 2).ToListAsync();
        Assert.Equal(events.Skip(events.Count - 2).Select(e => e.Seq), tail.Select(e => e.Seq));
    }
}
