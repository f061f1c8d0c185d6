using System.Net.Http.Json;
using System.Text.Json;
using BusFlow.Client;
using BusFlow.Contracts;
using BusFlow.Store;

namespace BusFlow.Host.Tests;

using PipelineStatus = BusFlow.Client.PipelineStatus;

/// <summary>
/// A deploy that changes a definition while its pipelines run (docs/operations.md, "Deploying a
/// changed pipeline"), with the <c>release</c> sample: version 1 runs build, approve (suspends) and
/// ship; version 2 drops ship and ends with announce. Each pipeline finishes on the version it
/// started with, decided only by processes that have that version.
/// </summary>
public sealed class When_a_deploy_changes_a_definition_while_its_pipelines_run
{
    private static readonly string[] Version1 = ["build", "approve", "ship"];
    private static readonly string[] Version2 = ["build", "approve", "announce"];

    [ServerFact]
    public async Task Should_finish_each_pipeline_on_its_version_through_a_rolling_deploy_of_saga_processes_on_RabbitMQ_and_PostgreSQL()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        Dictionary<string, string?> Release(string versions)
        {
            var settings = vhost.BusFlowSettings();
            settings["BusFlow:Store:Provider"] = "Postgres";
            settings["BusFlow:Store:ConnectionString"] = db.ConnectionString;
            settings["BusFlow:Store:ApplyMigrations"] = "true";
            settings["BusFlow:DefinitionWait"] = "00:05:00";
            settings["Samples:ReleaseVersions"] = versions;
            return settings;
        }

        // The old release: process A has version 1 alone, and starts pipelines that suspend.
        await using var a = await RunningHost.StartAsync(Release("1"));
        using var clientA = new BusFlowClient(a.BaseUri);
        var old = new List<Guid>();
        for (var i = 0; i < 4; i++)
        {
            old.Add(await clientA.StartAsync("release", new { n = i }));
        }

        foreach (var id in old)
        {
            Assert.Equal("1", (await SuspendedAsync(clientA, id)).DefinitionVersion);
        }

        // The new release rolls out: B has version 2 for new starts and keeps version 1 to drain; both serve, then A stops.
        await using var b = await RunningHost.StartAsync(Release("1,2"));
        using var clientB = new BusFlowClient(b.BaseUri);
        var versions = await VersionsAsync(b);
        Assert.Contains(new VersionRow("release", "1", Current: false, Registered: true, Running: 4), versions);
        Assert.Contains(new VersionRow("release", "2", Current: true, Registered: true, Running: 0), versions);
        await a.KillAsync();

        await AnswerAsync(clientB, old[0]);
        await AnswerAsync(clientB, old[1]);
        foreach (var id in old[..2])
        {
            await AssertRanAsync(clientB, id, "1", Version1);
        }

        var fresh = await clientB.StartAsync("release");
        Assert.Equal("2", (await SuspendedAsync(clientB, fresh)).DefinitionVersion);
        await AnswerAsync(clientB, fresh);
        await AssertRanAsync(clientB, fresh, "2", Version2);

        // A process of a later release has version 2 alone. With B gone it is the only saga: the
        // answer to the last version 1 pipeline reaches it, and it takes no decision on it.
        await using var c = await RunningHost.StartAsync(Release("2"));
        using var clientC = new BusFlowClient(c.BaseUri);
        await b.KillAsync();
        var waiting = await clientC.GetStatusAsync(old[2]);
        await AnswerAsync(clientC, old[2]);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var untouched = await clientC.GetStatusAsync(old[2]);
        Assert.Equal(("Running", waiting.LastSeq), (untouched.Status, untouched.LastSeq));
        Assert.Contains("runs 'release' version '1', which is not registered in this process", c.Output, StringComparison.Ordinal);
        Assert.Contains(new VersionRow("release", "1", Current: false, Registered: false, Running: 2), await VersionsAsync(c));

        // B comes back (its version 1 is still needed, the versions list said so): it decides the pipeline on version 1.
        await b.StartAgainAsync();
        await AssertRanAsync(clientC, old[2], "1", Version1);

        // Version 1 is dropped for good (B stops, C restarts with a short wait): the last version 1
        // pipeline, answered, waits that long for a process with its version, then fails saying why.
        await b.KillAsync();
        await c.KillAsync();
        c.Settings["BusFlow:DefinitionWait"] = "00:00:06";
        await c.StartAgainAsync();
        var answered = DateTimeOffset.UtcNow;
        await AnswerAsync(clientC, old[3]);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var failed = Assert.IsType<PipelineFailed>(await clientC.WatchAsync(old[3], cancellationToken: timeout.Token).LastAsync(timeout.Token));
        Assert.Equal("unknown_version", failed.Error.Kind);
        Assert.True(failed.Timestamp - answered >= TimeSpan.FromSeconds(6), $"failed {failed.Timestamp - answered} after the answer");
        Assert.DoesNotContain(await VersionsAsync(c), v => v.Running > 0);
    }

    [Fact]
    public async Task Should_finish_pipelines_on_their_version_across_restarts_of_the_embedded_host_and_fail_them_clearly_without_it()
    {
        await using var host = await RunningHost.StartAsync(new()
        {
            ["Samples:ReleaseVersions"] = "1",
            ["BusFlow:DefinitionWait"] = "00:00:03",
        });
        using var client = new BusFlowClient(host.BaseUri);
        var kept = await client.StartAsync("release");
        var dropped = await client.StartAsync("release");
        await SuspendedAsync(client, kept);
        await SuspendedAsync(client, dropped);

        // Restarted with version 2 alone: a version 1 pipeline waits for a process with its version, then fails saying why.
        await host.KillAsync();
        host.Settings["Samples:ReleaseVersions"] = "2";
        await host.StartAgainAsync();
        Assert.Contains(new VersionRow("release", "1", Current: false, Registered: false, Running: 2), await VersionsAsync(host));
        await AnswerAsync(client, dropped);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var failed = Assert.IsType<PipelineFailed>(await client.WatchAsync(dropped, cancellationToken: timeout.Token).LastAsync(timeout.Token));
        Assert.Equal("unknown_version", failed.Error.Kind);
        Assert.Contains("'release' in the version '1'", failed.Error.Message, StringComparison.Ordinal);
        var fresh = await client.StartAsync("release");
        Assert.Equal("2", (await SuspendedAsync(client, fresh)).DefinitionVersion);

        // Restarted with both: the other version 1 pipeline finishes on version 1, the new one on version 2.
        await host.KillAsync();
        host.Settings["Samples:ReleaseVersions"] = "1,2";
        await host.StartAgainAsync();
        await AnswerAsync(client, kept);
        await AnswerAsync(client, fresh);
        await AssertRanAsync(client, kept, "1", Version1);
        await AssertRanAsync(client, fresh, "2", Version2);
        Assert.DoesNotContain(await VersionsAsync(host), v => v.Running > 0);
    }

    private sealed record VersionRow(string Definition, string Version, bool Current, bool Registered, long Running);

    private static async Task<List<VersionRow>> VersionsAsync(RunningHost host) =>
        (await host.Http.GetFromJsonAsync<List<VersionRow>>("/api/definitions/versions", JsonSerializerOptions.Web))!;

    private static async Task<PipelineStatus> SuspendedAsync(BusFlowClient client, Guid id)
    {
        for (var i = 0; i < 300; i++)
        {
            var status = await client.GetStatusAsync(id);
            if (status.Suspensions.Count > 0)
            {
                return status;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"Pipeline {id} did not suspend: {(await client.GetStatusAsync(id)).Raw}");
    }

    private static async Task AnswerAsync(BusFlowClient client, Guid id) =>
        await client.AnswerAsync(id, (await SuspendedAsync(client, id)).Suspensions.Single().SuspendId, new { approved = true });

    /// <summary>The pipeline completed on <paramref name="version"/>, having run exactly its steps, with every seq once and in order.</summary>
    private static async Task AssertRanAsync(BusFlowClient client, Guid id, string version, string[] steps)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var events = await client.WatchAsync(id, cancellationToken: timeout.Token).ToListAsync(timeout.Token);
        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq));
        Assert.Equal(version, Assert.IsType<PipelineStarted>(events[0]).DefinitionVersion);
        Assert.IsType<PipelineCompleted>(events[^1]);
        Assert.Equal(steps, events.OfType<StepCompleted>().Select(e => e.StepName));
        Assert.Equal(version, (await client.GetStatusAsync(id)).DefinitionVersion);
    }
}
