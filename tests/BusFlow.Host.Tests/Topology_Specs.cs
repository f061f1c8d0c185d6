using System.Text.RegularExpressions;
using BusFlow.Client;
using BusFlow.Contracts;
using BusFlow.Store;
using Xunit.Abstractions;

namespace BusFlow.Host.Tests;

/// <summary>
/// docker-compose.yml's BusFlow services, started as local processes (no Docker engine here) on
/// the real RabbitMQ and PostgreSQL: the roles come from the compose file, so the two cannot drift.
/// </summary>
public sealed partial class When_the_compose_topology_runs_from_local_processes(ITestOutputHelper output)
{
    [ServerFact]
    public async Task Should_run_the_samples_across_edge_replicas_saga_and_workers()
    {
        var compose = await File.ReadAllTextAsync(Path.Combine(RunningHost.RepositoryRoot, "docker-compose.yml"));
        var roles = RolesPattern().Matches(compose).Select(m => m.Groups[1].Value.Trim()).ToList();
        Assert.Equal(["saga", "worker", "edge", "edge"], roles);

        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var hosts = new List<RunningHost>();
        try
        {
            foreach (var role in roles)
            {
                var settings = vhost.BusFlowSettings();
                settings["BusFlow:Roles"] = role;
                settings["BusFlow:Store:Provider"] = "Postgres";
                settings["BusFlow:Store:ConnectionString"] = db.ConnectionString;
                settings["BusFlow:Store:ApplyMigrations"] = "true";
                hosts.Add(await RunningHost.StartAsync(settings));
            }

            var (edge1, edge2) = (hosts[2], hosts[3]);
            using var client1 = new BusFlowClient(edge1.BaseUri);
            using var client2 = new BusFlowClient(edge2.BaseUri);

            // Started on one replica, watched on the other.
            var demo = await client1.StartAsync("demo", new { delayMs = 20, progressTicks = 1, flakyStep = "merge" });
            var events = await client2.WatchAsync(demo).ToListAsync();
            Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Seq));
            Assert.IsType<PipelineCompleted>(events[^1]);

            var wordcount = await client2.StartAsync("wordcount", new { texts = new[] { "a b", "b c" } });
            var counted = Assert.IsType<PipelineCompleted>(await client1.WatchAsync(wordcount).LastAsync());
            Assert.Equal(2, counted.Outputs["reduce"].GetProperty("b").GetInt32());

            var approval = await client1.StartAsync("approval", new { title = "topology" });
            await foreach (var e in client2.WatchAsync(approval))
            {
                if (e is StepSuspended suspended)
                {
                    await client1.AnswerAsync(approval, suspended.SuspendId, new { approved = true });
                }
                else if (e is PipelineCompleted or PipelineFailed)
                {
                    Assert.IsType<PipelineCompleted>(e);
                }
            }
        }
        catch
        {
            foreach (var (host, role) in hosts.Zip(roles))
            {
                output.WriteLine($"--- {role} ---\n{host.Output}");
            }

            throw;
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Should_expose_only_the_edges_on_loopback_with_auth_from_an_env_file()
    {
        var compose = await File.ReadAllTextAsync(Path.Combine(RunningHost.RepositoryRoot, "docker-compose.yml"));
        var services = ServicePattern().Matches(compose[compose.IndexOf("\nservices:", StringComparison.Ordinal)..])
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        Assert.Equal(["rabbitmq", "postgres", "busflow-saga", "busflow-worker", "busflow-edge-1", "busflow-edge-2"], services.Keys);
        foreach (var (name, body) in services)
        {
            // Published ports only for the edges, and only on the host's loopback address.
            var published = PortPattern().Matches(body).Select(m => m.Groups[1].Value).ToList();
            Assert.True(name.StartsWith("busflow-edge", StringComparison.Ordinal) ? published.Count == 1 && published[0].StartsWith("127.0.0.1:", StringComparison.Ordinal) : published.Count == 0, $"{name} publishes {string.Join(", ", published)}");
            if (name.StartsWith("busflow-edge", StringComparison.Ordinal))
            {
                Assert.Contains("env_file: .env", body, StringComparison.Ordinal);
            }
        }

        // No committed password: every one comes from .env, which git ignores; .env.example shows its shape.
        Assert.DoesNotContain("Password=busflow", compose, StringComparison.Ordinal);
        Assert.Contains("POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?", compose, StringComparison.Ordinal);
        var example = await File.ReadAllTextAsync(Path.Combine(RunningHost.RepositoryRoot, ".env.example"));
        Assert.Matches(@"(?m)^BusFlow__Edge__Auth__ApiKeys__\S+=\S+$", example);
        Assert.Matches(@"(?m)^POSTGRES_PASSWORD=\S+$", example);
        Assert.Contains(".env", (await File.ReadAllTextAsync(Path.Combine(RunningHost.RepositoryRoot, ".gitignore"))).Split('\n'));
    }

    [Fact]
    public async Task Should_run_the_host_with_thread_pool_workers_that_do_not_spin()
    {
        // What `dotnet run --no-build --project src/BusFlow.Host` (RunningHost) starts: the Debug build's runtime settings.
        var path = Path.Combine(RunningHost.RepositoryRoot, "src", "BusFlow.Host", "bin", "Debug", "net10.0", "BusFlow.Host.runtimeconfig.json");
        using var config = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(path));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.Equal(0, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }

    [GeneratedRegex(@"(?m)^  ([a-z0-9-]+):\n((?:(?:    .*)?\n)*)")]
    private static partial Regex ServicePattern();

    [GeneratedRegex(@"(?m)^      - ""([^""]+)""")]
    private static partial Regex PortPattern();

    [GeneratedRegex(@"BusFlow__Roles:\s*(\S+)")]
    private static partial Regex RolesPattern();
}
