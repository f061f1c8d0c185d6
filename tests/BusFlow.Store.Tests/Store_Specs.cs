using System.Collections.Concurrent;
using System.Data.Common;
using BusFlow.Contracts;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Tests.Support.EventAssertions;

namespace BusFlow.Store.Tests;

public sealed class When_pipelines_run_on_the_store
{
    private static void Pipelines(BusFlowBuilder b) => b
        .AddWorker("work", ctx => Task.FromResult(StepResult.Success(new { ctx.StepName })), concurrency: 64)
        .AddPipeline("dag", p => p
            .Step("a", s => s.Worker("work"))
            .Step("b", s => s.Worker("work").After("a"))
            .Step("c", s => s.Worker("work").After("a"))
            .Step("d", s => s.Worker("work").After("b", "c")));

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_log_every_event_gapless_give_positions_and_deliver_them_as_logged(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), Pipelines);

        var id = await host.RunPipeline("dag");

        var logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
        AssertGaplessSeq(logged);
        Assert.Equal(10, logged.Count);
        Assert.All(logged, e => Assert.True(e.Position > 0));
        Assert.Equal(logged.Select(e => e.Position).Order(), logged.Select(e => e.Position));
        var delivered = host.Events.For(id).OrderBy(e => e.Seq).ToList();
        Assert.Equal(logged.Select(e => (e.Seq, e.Position, e.EventType)), delivered.Select(e => (e.Seq, e.Position, e.EventType)));
        Assert.Equal(3, (await host.Reader.ReadPipelineAsync(id, 7, 100)).Count);

        var state = await host.Services.GetRequiredService<PipelineStore>().FindAsync(id);
        Assert.Equal(PipelineStatus.Completed, state!.Status);
        Assert.All(state.Steps, s => Assert.Equal(StepStatus.Completed, s.Status));
    }

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_finish_a_pipeline_after_a_restart_from_the_state_it_stored(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var events = new RecordedEventsHolder();
        var attempts = new ConcurrentQueue<int>();
        void Flaky(BusFlowBuilder b) => b
            .AddWorker("flaky", ctx =>
            {
                attempts.Enqueue(ctx.Attempt);
                return Task.FromResult(ctx.Attempt == 1 ? StepResult.Fail("first attempt fails") : StepResult.Success("second"));
            })
            .AddPipeline("restart", p => p.Then("flaky", s => s.Retry(2, TimeSpan.FromSeconds(2))));

        Guid id;
        await using (var first = await StoreHost.Start(db.Options(), Flaky, events.Events))
        {
            id = await first.StartPipeline("restart");
            await first.Events.WaitFor<StepFailed>(id);
        }

        // The retry is due in the stopped process's clock; the new process re-arms it from the store.
        await using var second = await StoreHost.Start(db.Options(), Flaky, events.Events);
        Assert.IsType<PipelineCompleted>(await second.Events.WaitForEnd(id));
        Assert.Equal([1, 2], attempts);
        var logged = await second.Reader.ReadPipelineAsync(id, 0, 100);
        AssertGaplessSeq(logged);
        Assert.Equal(["PipelineStarted", "StepStarted", "StepFailed", "StepStarted", "StepCompleted", "PipelineCompleted"], Types(logged));
    }

    private sealed class RecordedEventsHolder
    {
        public BusFlow.Tests.Support.RecordedEvents Events { get; } = new();
    }
}

public sealed class When_replaying_by_position_under_concurrent_writers
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_never_skip_an_event(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("w", async ctx =>
            {
                await Task.Yield();
                return StepResult.Success();
            }, concurrency: 64)
            .AddPipeline("wide", p =>
            {
                p.Step("root", s => s.Worker("w"));
                for (var i = 0; i < 6; i++)
                {
                    p.Step($"b{i}", s => s.Worker("w").After("root"));
                }
            }));

        var writers = Task.WhenAll(Enumerable.Range(0, 60).Select(_ => host.StartPipeline("wide")));
        var seen = new List<PipelineEvent>();
        var ids = await writers;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        var expected = ids.Length * 16;
        while (seen.Count < expected && DateTime.UtcNow < deadline)
        {
            var after = seen.Count == 0 ? 0 : seen[^1].Position;
            var batch = await host.Reader.ReadAllAsync(after, 37);
            for (var i = 0; i < batch.Count; i++)
            {
                // Positions are contiguous: a reader that skipped a late commit would see a gap here.
                Assert.Equal(after + i + 1, batch[i].Position);
            }

            seen.AddRange(batch);
            if (batch.Count == 0)
            {
                await Task.Delay(5);
            }
        }

        Assert.Equal(expected, seen.Count);
        foreach (var id in ids)
        {
            AssertGaplessSeq(seen.Where(e => e.PipelineId == id).ToList());
            Assert.Equal(seen.Where(e => e.PipelineId == id).Select(e => e.Seq), seen.Where(e => e.PipelineId == id).Select(e => e.Seq).Order());
        }
    }
}

public sealed class When_a_step_command_is_delivered_twice
{
    private int _runs;

    private int Runs => Volatile.Read(ref _runs);

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_run_the_step_and_its_enlisted_effect_once(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StartCountingWorker(db);

        var command = new ExecuteStep { PipelineId = NewId.NextGuid(), ExecutionId = NewId.NextGuid(), Definition = "noop", StepName = "once", Worker = "once", Attempt = 1 };
        var messageId = NewId.NextGuid();
        var endpoint = await host.Bus.GetSendEndpoint(new Uri("queue:busflow-step-once"));
        await endpoint.Send(command, c => c.MessageId = messageId);
        await WaitForOutbox(host, o => o.PipelineId == command.PipelineId, "The step's report never reached the outbox.");
        // A copy arriving fresh, not marked redelivered: what MassTransit's own send retry delivers
        // when a connection dropped after the broker had the first one.
        await endpoint.Send(command, c => c.MessageId = messageId);
        await endpoint.Send(command with { ExecutionId = NewId.NextGuid() }, c => c.MessageId = NewId.NextGuid());
        await WaitUntil(() => Runs == 2);
        await Task.Delay(300);

        Assert.Equal(2, Runs);
        Assert.Equal(2L, await Scalar(host, "SELECT COUNT(*) FROM side_effects"));
    }

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_record_one_outcome_and_one_effect_when_two_copies_run_at_once(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StartCountingWorker(db, runFor: TimeSpan.FromMilliseconds(300));

        // Both copies pass the inbox look-up before either records its outcome; both reports join
        // groups, the second group fails on the inbox key and that report, tried alone, is dropped.
        var command = new ExecuteStep { PipelineId = NewId.NextGuid(), ExecutionId = NewId.NextGuid(), Definition = "noop", StepName = "once", Worker = "once", Attempt = 1 };
        var messageId = NewId.NextGuid();
        var endpoint = await host.Bus.GetSendEndpoint(new Uri("queue:busflow-step-once"));
        await Task.WhenAll(endpoint.Send(command, c => c.MessageId = messageId), endpoint.Send(command, c => c.MessageId = messageId));
        await WaitUntil(() => Runs == 2);
        await WaitForOutbox(host, o => o.PipelineId == command.PipelineId, "The step's report never reached the outbox.");
        await Task.Delay(500);

        Assert.Equal(2, Runs);
        Assert.Equal(1L, await Scalar(host, "SELECT COUNT(*) FROM side_effects"));
        await using var context = await host.Databases.CreateDbContextAsync();
        Assert.Equal(1, await context.Outbox.CountAsync(o => o.PipelineId == command.PipelineId));
    }

    /// <summary>
    /// Co-located, the first run takes no bus delivery: the fold's inbox row is what stops the copy;
    /// on the ordinary path the worker's own inbox row does.
    /// </summary>
    [Theory]
    [InlineData(StoreProviderKind.Sqlite, true)]
    [InlineData(StoreProviderKind.Postgres, true)]
    [InlineData(StoreProviderKind.Sqlite, false)]
    [InlineData(StoreProviderKind.Postgres, false)]
    public async Task Should_not_run_the_step_again_when_the_outbox_sends_its_command_again(StoreProviderKind provider, bool colocate)
    {
        await using var db = await TestDatabase.Create(provider);
        var consumed = new ConsumedMessages<ExecuteStep>();
        await using var host = await StartCountingWorker(db, bus => bus.AddConsumeObserver(_ => consumed), colocate);
        var id = await host.RunPipeline("noop");
        // The sender gathers its marks for a moment; a row reset before that would be marked again.
        await WaitForOutbox(host, o => o.PipelineId == id && o.DeliveredAt == null, "The pipeline's outbox rows were never marked delivered.", present: false);

        // What the outbox delivery finds when the process that sent the command died before marking
        // its row: an undelivered row older than the grace period, which it sends again.
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var row = await context.Outbox.SingleAsync(o => o.PipelineId == id && o.MessageType == typeof(ExecuteStep).FullName);
            row.DeliveredAt = null;
            row.CreatedAt -= TimeSpan.FromHours(1);
            await context.SaveChangesAsync();
        }

        // Counted once the consumer is done with it: run or dropped as handled.
        var deliveries = colocate ? 1 : 2;
        await WaitUntil(() => consumed.Count == deliveries);
        await Task.Delay(300);

        Assert.Equal(deliveries, consumed.Count);
        Assert.Equal(1, Runs);
        Assert.Equal(1L, await Scalar(host, "SELECT COUNT(*) FROM side_effects"));
    }

    /// <summary>A store host whose worker "once" (pipeline "noop") counts its runs and enlists one row of <c>side_effects</c> per run.</summary>
    private async Task<StoreHost> StartCountingWorker(TestDatabase db, Action<IBusRegistrationConfigurator>? consumers = null, bool colocate = true, TimeSpan runFor = default)
    {
        var host = await StoreHost.Start(db.Options(o => o.ColocateSteps = colocate), b => b
            .AddWorker("once", async ctx =>
            {
                Interlocked.Increment(ref _runs);
                await Task.Delay(runFor, ctx.CancellationToken);
                ctx.Enlist(async commit =>
                {
                    await using var insert = commit.Connection!.CreateCommand();
                    insert.Transaction = commit.Transaction;
                    insert.CommandText = "INSERT INTO side_effects (execution_id) VALUES ('" + ctx.Command.ExecutionId + "')";
                    await insert.ExecuteNonQueryAsync(commit.CancellationToken);
                });
                return StepResult.Success();
            })
            .AddPipeline("noop", p => p.Then("once")),
            consumers: consumers);
        await Execute(host, "CREATE TABLE side_effects (execution_id VARCHAR(64) NOT NULL)");
        return host;
    }

    /// <summary>Waits until an outbox row matching <paramref name="row"/> exists (or, with <paramref name="present"/> false, none does).</summary>
    private static async Task WaitForOutbox(StoreHost host, System.Linq.Expressions.Expression<Func<OutboxMessageRecord, bool>> row, string failure, bool present = true)
    {
        for (var i = 0; i < 500; i++)
        {
            await using var db = await host.Databases.CreateDbContextAsync();
            if (await db.Outbox.AnyAsync(row) == present)
            {
                return;
            }

            await Task.Delay(10);
        }

        Assert.Fail(failure);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }
    }

    internal static async Task Execute(StoreHost host, string sql)
    {
        await using var db = await host.Databases.CreateDbContextAsync();
        await db.Database.ExecuteSqlRawAsync(sql);
    }

    internal static async Task<long> Scalar(StoreHost host, string sql)
    {
        await using var db = await host.Databases.CreateDbContextAsync();
        var connection = db.Database.GetDbConnection();
        await connection.OpenAsync();
        await using DbCommand command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}

public sealed class When_the_log_holds_a_row_this_version_cannot_read
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_skip_it_on_replay_and_delivery_and_keep_serving(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.StartWithOneStep(db.Options());
        var id = await host.RunPipeline("one");

        var databases = host.Databases;
        await using (var ctx = await databases.CreateDbContextAsync())
        {
            ctx.Events.Add(new PipelineEventRecord { PipelineId = id, Seq = 5, Type = "StepTeleported", Timestamp = DateTimeOffset.UtcNow, Payload = """{"type":"StepTeleported","pipelineId":"x"}""" });
            ctx.Events.Add(new PipelineEventRecord { PipelineId = id, Seq = 6, Type = "StepCompleted", Timestamp = DateTimeOffset.UtcNow, Payload = "{not json" });
            await ctx.SaveChangesAsync();
        }

        var second = await host.RunPipeline("one");

        var replayed = await host.Reader.ReadPipelineAsync(id, 0, 100);
        Assert.Equal([1L, 2, 3, 4], replayed.Select(e => e.Seq));
        var all = await host.Reader.ReadAllAsync(0, 1000);
        Assert.Contains(all, e => e.PipelineId == second);
        Assert.DoesNotContain(all, e => e.PipelineId == id && e.Seq > 4);
    }
}

public sealed class When_replay_reads_the_log_as_stored
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_give_each_rows_recorded_JSON_as_UTF8_bytes_in_order_with_its_columns(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.StartWithOneStep(db.Options());
        var other = await host.RunPipeline("one");

        // Rows whose JSON holds text outside ASCII as it is (the serializer escapes it; a row may not).
        const string Text = "héllo – ✓ 𝄞";
        var id = Guid.NewGuid();
        var databases = host.Databases;
        await using (var ctx = await databases.CreateDbContextAsync())
        {
            for (var seq = 1; seq <= 4; seq++)
            {
                var e = new StepProgress { PipelineId = id, Seq = seq, Timestamp = DateTimeOffset.UtcNow, Definition = "one", StepName = "w", StepIndex = 0, Attempt = 1, Percent = seq, Message = "x" };
                ctx.Events.Add(new PipelineEventRecord { PipelineId = id, Seq = seq, Type = nameof(StepProgress), Timestamp = e.Timestamp, Payload = PipelineEventJson.Serialize(e).Replace("\"x\"", $"\"{Text} {seq}\"", StringComparison.Ordinal) });
            }

            await ctx.SaveChangesAsync();
        }

        var rows = new List<PipelineEventRecord>();
        for (var attempt = 0; attempt < 100 && (rows.Count < 4 || rows.Any(r => r.Position is null)); attempt++)
        {
            await Task.Delay(50);
            await using var ctx = await databases.CreateDbContextAsync();
            rows = await ctx.Events.AsNoTracking().Where(e => e.PipelineId == id).OrderBy(e => e.Seq).ToListAsync();
        }

        Assert.All(rows, r => Assert.NotNull(r.Position));

        // A pipeline's rows by seq: the payload column's bytes as UTF-8 (not UTF-16), with the routing columns.
        var page = await host.Reader.ReadPipelineStoredAsync(id, 0, 1000);
        Assert.Equal(rows.Select(r => (r.PipelineId, r.Seq, r.Position!.Value, r.Type)), page.Events.Select(e => (e.PipelineId, e.Seq, e.Position, e.Type)));
        Assert.All(rows.Zip(page.Events), pair => Assert.Equal(System.Text.Encoding.UTF8.GetBytes(pair.First.Payload), pair.Second.Payload.ToArray()));
        Assert.Equal(rows[^1].Seq, page.Last);
        Assert.Equal(rows.Select(r => $"{Text} {r.Seq}"), page.Events.Select(e => Assert.IsType<StepProgress>(e.Read()).Message));

        // Paged: after a seq, at most the limit, and Last is the last seq read (or where it started).
        var middle = await host.Reader.ReadPipelineStoredAsync(id, 1, 2);
        Assert.Equal([2L, 3], middle.Events.Select(e => e.Seq));
        Assert.Equal(3, middle.Last);
        var past = await host.Reader.ReadPipelineStoredAsync(id, rows[^1].Seq, 10);
        Assert.Empty(past.Events);
        Assert.Equal(rows[^1].Seq, past.Last);

        // Every pipeline by position: both pipelines, in position order, the same bytes.
        var all = await host.Reader.ReadAllStoredAsync(0, 1000);
        Assert.Equal(all.Events.Select(e => e.Position).Order(), all.Events.Select(e => e.Position));
        Assert.Contains(all.Events, e => e.PipelineId == other);
        Assert.Equal(page.Events.Select(e => System.Text.Encoding.UTF8.GetString(e.Payload.Span)), all.Events.Where(e => e.PipelineId == id).Select(e => System.Text.Encoding.UTF8.GetString(e.Payload.Span)));
        var afterFirst = await host.Reader.ReadAllStoredAsync(all.Events[0].Position, 1);
        Assert.Equal(all.Events[1].Position, Assert.Single(afterFirst.Events).Position);
        Assert.Equal(all.Events[1].Position, afterFirst.Last);
    }
}

public sealed class When_retention_runs
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_prune_finished_pipelines_and_keep_running_ones(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var release = new TaskCompletionSource<StepResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = await StoreHost.Start(db.Options(o => o.Retention = TimeSpan.Zero), b => b
            .AddWorker("quick", ctx => Task.FromResult(StepResult.Success()))
            .AddWorker("held", ctx => release.Task)
            .AddPipeline("quick", p => p.Then("quick"))
            .AddPipeline("held", p => p.Then("held")));

        var done = await host.StartPipeline("quick");
        var running = await host.StartPipeline("held");
        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(done));
        await host.Events.WaitFor<StepStarted>(running);
        await Task.Delay(300);
        var store = host.Services.GetRequiredService<PipelineStore>();
        await store.ClaimKeyAsync("start", "done-key", "hash", done);
        await store.ClaimKeyAsync("start", "running-key", "hash", running);

        // Events the broker has not confirmed (above the delivered-up-to mark) are never pruned.
        var retention = host.Services.GetRequiredService<RetentionService>();
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var lease = await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.LeaseName);
            await SetDeliveredUpTo(context, 0);
            await retention.PruneAsync(CancellationToken.None);
            Assert.NotEmpty(await host.Reader.ReadPipelineAsync(done, 0, 100));
            Assert.NotNull(await store.FindAsync(done));
            await SetDeliveredUpTo(context, lease.DeliveredUpTo);
        }

        var pruned = await retention.PruneAsync(CancellationToken.None);

        Assert.Null(await store.FindKeyAsync("start", "done-key"));
        Assert.NotNull(await store.FindKeyAsync("start", "running-key"));
        Assert.True(pruned > 0);
        Assert.Empty(await host.Reader.ReadPipelineAsync(done, 0, 100));
        Assert.Null(await host.Services.GetRequiredService<PipelineStore>().FindAsync(done));
        Assert.NotEmpty(await host.Reader.ReadPipelineAsync(running, 0, 100));
        release.SetResult(StepResult.Success());
        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(running));
    }

    private static Task<int> SetDeliveredUpTo(BusFlowDbContext context, long position) =>
        context.Leases.Where(l => l.Name == OutboxDelivery.LeaseName).ExecuteUpdateAsync(s => s.SetProperty(l => l.DeliveredUpTo, position));
}

public sealed class When_the_database_is_unreachable_at_start
{
    [Fact]
    public async Task Should_fail_with_a_message_naming_the_setting()
    {
        var options = new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = "Host=127.0.0.1;Port=1;Username=postgres;Password=secret;Timeout=2", ApplyMigrations = true };

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => StoreHost.Start(options, b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("one", p => p.Then("w"))));

        Assert.Contains("BusFlow:Store:ConnectionString", error.Message, StringComparison.Ordinal);
        Assert.Contains("port=1", error.Message, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
    }
}

public sealed class When_the_in_memory_transport_restarts_with_a_step_in_flight
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_send_the_lost_step_command_again_and_finish(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var events = new BusFlow.Tests.Support.RecordedEvents();
        var firstProcess = true;
        void Pipelines(BusFlowBuilder b) => b
            .AddWorker("hang-once", async ctx =>
            {
                if (Volatile.Read(ref firstProcess))
                {
                    await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
                }

                return StepResult.Success("ran after restart");
            })
            .AddPipeline("inflight", p => p.Then("hang-once"));

        Guid id;
        await using (var first = await StoreHost.Start(db.Options(), Pipelines, events))
        {
            id = await first.StartPipeline("inflight");
            await first.Events.WaitFor<StepStarted>(id);
            await Task.Delay(200);
        }

        // The ExecuteStep lived only in the stopped process's memory.
        Volatile.Write(ref firstProcess, false);
        await using var second = await StoreHost.Start(db.Options(), Pipelines, events);
        var end = Assert.IsType<PipelineCompleted>(await second.Events.WaitForEnd(id));
        Assert.Equal("ran after restart", end.Outputs["hang-once"].GetString());
        AssertGaplessSeq(await second.Reader.ReadPipelineAsync(id, 0, 100));
    }
}

public sealed class When_readiness_is_checked
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_report_the_store_healthy_while_it_answers_and_unhealthy_when_it_does_not(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.StartWithOneStep(db.Options());

        var report = await host.Services.GetRequiredService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>()
            .CheckHealthAsync(c => c.Tags.Contains("ready"));
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, report.Entries[StoreHealthCheck.Name].Status);

        var unreachable = new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = "Host=127.0.0.1;Port=1;Username=postgres;Timeout=2" };
        var services = new ServiceCollection();
        services.AddDbContextFactory<BusFlowDbContext>(o => StoreProvider.Configure(o, unreachable.Provider, unreachable.ConnectionString));
        await using var provider2 = services.BuildServiceProvider();
        var check = new StoreHealthCheck(provider2.GetRequiredService<IDbContextFactory<BusFlowDbContext>>(), unreachable);
        var result = await check.CheckHealthAsync(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext());
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, result.Status);
        Assert.Contains("BusFlow:Store:ConnectionString", result.Description, StringComparison.Ordinal);
    }
}

public sealed class When_the_store_opens_a_SQLite_connection
{
    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 2)]
    public async Task Should_set_it_up_for_many_writers_with_rare_checkpoints(bool fullSync, long synchronous)
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString, fullSync);
        await using var context = new BusFlowDbContext(options.Options);
        await context.Database.OpenConnectionAsync();
        var connection = context.Database.GetDbConnection();

        async Task<object?> Pragma(string name)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA " + name;
            return await command.ExecuteScalarAsync();
        }

        Assert.Equal("wal", await Pragma("journal_mode"));
        Assert.Equal(synchronous, await Pragma("synchronous"));
        Assert.Equal(4000L, await Pragma("wal_autocheckpoint"));
        Assert.Equal(30_000L, await Pragma("busy_timeout"));
    }
}

public sealed class When_the_store_opens_a_PostgreSQL_connection
{
    [Theory]
    [InlineData("", true)]
    [InlineData(";Max Auto Prepare=0", false)]
    [InlineData(";maxautoprepare=0", false)]
    public async Task Should_prepare_the_statements_it_repeats_unless_the_connection_string_says_otherwise(string setting, bool prepared)
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString + setting);
        await using var context = new BusFlowDbContext(options.Options);
        await context.Database.OpenConnectionAsync();
        var connection = context.Database.GetDbConnection();

        async Task<long> Scalar(string sql)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = sql;
            return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
        }

        // The same statement, as the hot path repeats its own, past Npgsql's usage threshold (5).
        for (var i = 0; i < 8; i++)
        {
            await Scalar("SELECT count(*) FROM pg_class WHERE relname = 'busflow_pipelines_probe'");
        }

        Assert.Equal(prepared, await Scalar("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%busflow_pipelines_probe%'") > 0);
    }
}

public sealed class When_transitions_commit_on_SQLite
{
    [Fact]
    public async Task Should_have_them_checkpointed_into_the_file_in_the_background_long_before_the_log_fills()
    {
        // SQLite alone copies the log into the file only once it holds 4,000 pages, inside the commit
        // that crosses that size; one pipeline writes far fewer. The background checkpointer copies
        // them within a fraction of a second, so the database file without its log already holds them.
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        await using var host = await StoreHost.StartWithOneStep(db.Options());
        var id = await host.RunPipeline("one");

        var file = new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(db.ConnectionString).DataSource;
        var copy = Path.Combine(Path.GetTempPath(), $"busflow-checkpoint-{Guid.NewGuid():N}.db");
        try
        {
            string? status = null;
            for (var attempt = 0; attempt < 50 && status != "Completed"; attempt++)
            {
                await Task.Delay(100);
                File.Copy(file, copy, overwrite: true);
                status = ReadStatus(copy, id);
            }

            Assert.Equal("Completed", status);
        }
        finally
        {
            foreach (var suffix in new[] { "", "-wal", "-shm" })
            {
                File.Delete(copy + suffix);
            }
        }
    }

    /// <summary>The pipeline's status in the file alone (no log beside the copy), or null.</summary>
    private static string? ReadStatus(string file, Guid id)
    {
        try
        {
            using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={file};Mode=ReadOnly;Pooling=False");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = """SELECT "Status" FROM busflow_pipelines WHERE "PipelineId" = $id""";
            command.Parameters.AddWithValue("$id", id.ToString().ToUpperInvariant());
            return command.ExecuteScalar() as string;
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            // A copy taken in the middle of a checkpoint may not open: take another.
            return null;
        }
    }
}

public sealed class When_a_process_was_killed_while_it_held_the_migration_lock
{
    [Fact]
    public async Task Should_start_without_waiting_for_it_when_the_schema_is_current()
    {
        // EF Core's SQLite migration lock is a row in __EFMigrationsLock; a process killed while
        // holding it never deletes it, and a migration waits for it forever.
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString);
        await using (var context = new BusFlowDbContext(options.Options))
        {
            await context.Database.MigrateAsync();
            await context.Database.ExecuteSqlRawAsync("INSERT INTO \"__EFMigrationsLock\" (\"Id\", \"Timestamp\") VALUES (1, '2000-01-01 00:00:00+00:00')");
        }

        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("one", p => p.Then("w"))).WaitAsync(TimeSpan.FromSeconds(30));
        var id = await host.RunPipeline("one");
    }
}

public sealed class When_events_are_published_in_batches
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_deliver_every_event_once_in_order_in_far_fewer_messages(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var messages = new BusMessages();
        await using var host = await StoreHost.Start(
            db.Options(o => o.EventPublishing = EventPublishMode.Batched),
            b => b
                .AddWorker("work", ctx => Task.FromResult(StepResult.Success()), concurrency: 16)
                .AddPipeline("two", p => p.Then("a", s => s.Worker("work")).Then("b", s => s.Worker("work"))),
            consumers: bus =>
            {
                bus.AddSingleton(messages);
                bus.AddConsumer<BatchCounter>();
                // One message at a time, so the order across batches holds too (a consumer that takes
                // several at once sees them in any order).
                bus.AddConsumer<SingleEvents>().Endpoint(e => e.ConcurrentMessageLimit = 1);
                bus.AddConsumer<SharedEvents>().Endpoint(e =>
                {
                    e.Name = "shared-events";
                    e.ConcurrentMessageLimit = 1;
                });
                bus.AddConsumer<SharedSingleEvents>().Endpoint(e =>
                {
                    e.Name = "shared-events";
                    e.ConcurrentMessageLimit = 1;
                });
            });

        // A pipeline run by the saga: its events arrive through batches, in order.
        var id = await host.RunPipeline("two");
        Assert.Equal(Types(await host.Reader.ReadPipelineAsync(id, 0, 100)), Types(host.Events.For(id)));

        // 4 pipelines' 200 events committed at once, as transitions of a busy store would.
        var pipelines = Enumerable.Range(0, 4).Select(_ => NewId.NextGuid()).ToList();
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var at = DateTimeOffset.UtcNow;
            context.Events.AddRange(
                from seq in Enumerable.Range(1, 50)
                from pipelineId in pipelines
                let e = new StepProgress { PipelineId = pipelineId, Seq = seq, Timestamp = at, Definition = "two", StepName = "a", StepIndex = 0, Attempt = 1, Percent = seq * 2 }
                select new PipelineEventRecord { PipelineId = pipelineId, Seq = seq, Type = e.EventType, Timestamp = at, Payload = PipelineEventJson.Serialize(e) });
            await context.SaveChangesAsync();
        }

        for (var i = 0; i < 1000 && pipelines.Sum(p => host.Events.For(p).Count) < 200; i++)
        {
            await Task.Delay(10);
        }

        foreach (var pipelineId in pipelines)
        {
            var received = host.Events.For(pipelineId);
            Assert.Equal(Enumerable.Range(1, 50).Select(s => (long)s), received.Select(e => e.Seq));
            Assert.Equal(received.Select(e => e.Position).Order(), received.Select(e => e.Position));
        }

        var logged = await host.Reader.ReadAllAsync(0, 1000);
        Assert.Equal(logged.Select(e => e.Position), Enumerable.Range(1, logged.Count).Select(p => (long)p));

        // The counting consumers may still be taking the last batches.
        var singles = logged.Where(e => e is StepProgress or PipelineCompleted).ToList();
        for (var i = 0; i < 1000 && (messages.BatchedEvents < logged.Count || messages.Singles.Count < singles.Count || messages.Shared.Count < logged.Count); i++)
        {
            await Task.Delay(10);
        }

        Assert.Equal(logged.Count, messages.BatchedEvents);
        Assert.True(messages.Batches < 100, $"{messages.Batches} batch messages carried the 200 events committed at once");

        // A consumer written for single events gets each of its types once, in order per pipeline,
        // with the message id the event has when published alone; the batches were not doubled by
        // single messages (the counts would be twice as high).
        Assert.Equal(
            singles.OrderBy(e => e.PipelineId).ThenBy(e => e.Seq).Select(e => (e.PipelineId, e.Seq, Id: (Guid?)PipelineEventMessageIds.For(e.PipelineId, e.Seq))),
            messages.Singles.OrderBy(e => e.PipelineId).Select(e => (e.PipelineId, e.Seq, Id: e.MessageId)));
        foreach (var pipeline in messages.Singles.GroupBy(e => e.PipelineId))
        {
            Assert.Equal(pipeline.Select(e => e.Seq).Order(), pipeline.Select(e => e.Seq));
        }

        // On an endpoint shared by a PipelineEventsConsumer and a single-event consumer, each gets every event once.
        Assert.Equal(logged.Select(e => (e.PipelineId, e.Seq)).Order(), messages.Shared.Select(e => (e.PipelineId, e.Seq)).Order());
        Assert.Equal(logged.Count(e => e is PipelineCompleted), messages.SharedSingles.Count);
    }

    public sealed record Received(Guid PipelineId, long Seq, Guid? MessageId);

    public sealed class BusMessages
    {
        private int _batches;
        private int _batchedEvents;

        public int Batches => Volatile.Read(ref _batches);

        public int BatchedEvents => Volatile.Read(ref _batchedEvents);

        public ConcurrentQueue<Received> Singles { get; } = new();

        public ConcurrentQueue<Received> Shared { get; } = new();

        public ConcurrentQueue<Received> SharedSingles { get; } = new();

        public void Batch(int events)
        {
            Interlocked.Increment(ref _batches);
            Interlocked.Add(ref _batchedEvents, events);
        }
    }

    public sealed class BatchCounter(BusMessages messages) : IConsumer<PipelineEventBatch>
    {
        public Task Consume(ConsumeContext<PipelineEventBatch> context)
        {
            messages.Batch(context.Message.Events.Count);
            return Task.CompletedTask;
        }
    }

    public sealed class SingleEvents(BusMessages messages) : IConsumer<StepProgress>, IConsumer<PipelineCompleted>
    {
        public Task Consume(ConsumeContext<StepProgress> context) => Take(context);

        public Task Consume(ConsumeContext<PipelineCompleted> context) => Take(context);

        private Task Take<T>(ConsumeContext<T> context)
            where T : PipelineEvent
        {
            messages.Singles.Enqueue(new Received(context.Message.PipelineId, context.Message.Seq, context.MessageId));
            return Task.CompletedTask;
        }
    }

    public sealed class SharedEvents(BusMessages messages) : PipelineEventsConsumer
    {
        protected override Task ConsumeEvent(PipelineEvent pipelineEvent, ConsumeContext context)
        {
            messages.Shared.Enqueue(new Received(pipelineEvent.PipelineId, pipelineEvent.Seq, context.MessageId));
            return Task.CompletedTask;
        }
    }

    public sealed class SharedSingleEvents(BusMessages messages) : IConsumer<PipelineCompleted>
    {
        public Task Consume(ConsumeContext<PipelineCompleted> context)
        {
            messages.SharedSingles.Enqueue(new Received(context.Message.PipelineId, context.Message.Seq, context.MessageId));
            return Task.CompletedTask;
        }
    }
}

public sealed class When_a_saga_message_arrives_twice
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_apply_it_once_even_when_the_copy_is_not_marked_redelivered(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var handled = new ConsumedMessages<ReportStepProgress>();
        var running = new TaskCompletionSource<Guid>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("held", async ctx =>
            {
                running.TrySetResult(ctx.Command.ExecutionId);
                await release.Task;
                return StepResult.Success();
            })
            .AddPipeline("one", p => p.Then("held")),
            consumers: bus => bus.AddConsumeObserver(_ => handled));

        var id = await host.StartPipeline("one");
        var executionId = await running.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // What an outbox re-sends after its deliverer died between the broker's confirm and marking
        // the row: the same message, same MessageId, arriving fresh rather than redelivered.
        var messageId = NewId.NextGuid();
        var report = new ReportStepProgress { PipelineId = id, ExecutionId = executionId, Message = "copied" };
        await host.Bus.Publish(report, c => c.MessageId = messageId);
        await host.Bus.Publish(report, c => c.MessageId = messageId);
        await host.Bus.Publish(report with { Message = "other" }, c => c.MessageId = NewId.NextGuid());
        await host.Events.WaitFor<StepProgress>(id);
        await Task.Delay(500);
        release.SetResult();

        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id));
        var logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
        AssertGaplessSeq(logged);
        Assert.Equal(["copied", "other"], logged.OfType<StepProgress>().Select(e => e.Message).Order());

        // The copy was taken off the queue as handled, not retried without end.
        for (var i = 0; i < 500 && handled.Count < 3; i++)
        {
            await Task.Delay(10);
        }

        Assert.Equal(3, handled.Count);
    }
}

public sealed class When_a_store_written_before_the_delivery_watermark_is_upgraded
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite, "20261123092919_Initial", "1")]
    [InlineData(StoreProviderKind.Postgres, "20261123092952_Initial", "now()")]
    public async Task Should_carry_over_what_was_delivered_and_deliver_only_the_rest(StoreProviderKind provider, string initial, string deliveredAt)
    {
        await using var db = await TestDatabase.Create(provider);
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, db.Provider, db.ConnectionString);
        var pipelineId = NewId.NextGuid();
        await using (var context = new BusFlowDbContext(options.Options))
        {
            // The schema and rows as the previous version left them: positions 1-3 delivered (a
            // timestamp in every row), 4-5 positioned but not yet confirmed, 6 committed but not positioned.
            await context.Database.MigrateAsync(initial);
            for (var seq = 1; seq <= 6; seq++)
            {
                var payload = PipelineEventJson.Serialize(new StepProgress
                {
                    PipelineId = pipelineId,
                    Seq = seq,
                    Timestamp = DateTimeOffset.UtcNow,
                    Definition = "old",
                    StepName = "s",
                    StepIndex = 0,
                    Attempt = 1,
                    Percent = seq,
                });
                var position = seq <= 5 ? seq.ToString(System.Globalization.CultureInfo.InvariantCulture) : "NULL";
                var delivered = seq <= 3 ? deliveredAt : "NULL";
#pragma warning disable EF1002 // test data built from constants
                await context.Database.ExecuteSqlRawAsync(
                    $$"""INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload", "DeliveredAt") VALUES ({{position}}, {0}, {{seq}}, 'StepProgress', {1}, {2}, {{delivered}})""",
                    pipelineId,
                    DateTimeOffset.UtcNow,
                    payload);
#pragma warning restore EF1002
            }

            await context.Database.ExecuteSqlRawAsync("""UPDATE busflow_leases SET "LastPosition" = 5 WHERE "Name" = 'outbox'""");
        }

        await using var host = await StoreHost.StartWithOneStep(db.Options());

        await host.Events.WaitFor<StepProgress>(pipelineId, e => e.Seq == 6, TimeSpan.FromSeconds(30));
        await using (var context = new BusFlowDbContext(options.Options))
        {
            await WaitUntil(async () => (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.LeaseName)).DeliveredUpTo == 6);
        }

        // A pipeline run after the upgrade is delivered as usual, and nothing delivered before came again.
        var id = await host.RunPipeline("one");
        Assert.Equal([4L, 5L, 6L], host.Events.For(pipelineId).Select(e => e.Seq).Order());
        Assert.Equal([4L, 5L, 6L], host.Events.For(pipelineId).Select(e => e.Position).Order());
    }

    private static async Task WaitUntil(Func<Task<bool>> condition)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < until, "the outbox lease's delivered-up-to position did not reach 6 within 30 s");
            await Task.Delay(50);
        }
    }
}

public sealed class When_a_transition_decides_many_events_at_once
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_record_them_with_one_insert_and_replay_and_deliver_them_as_decided(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("split", ctx => Task.FromResult(StepResult.Success(Enumerable.Range(0, 30).ToArray())))
            .AddWorker("each", ctx => Task.FromResult(StepResult.Success(ctx.StepName)), concurrency: 64)
            .AddPipeline("wide", p => p
                .Step("split", s => s.Worker("split"))
                .Map("each", s => s.Worker("each").Over("split"))));

        var id = await host.RunPipeline("wide", timeout: TimeSpan.FromSeconds(60));

        // The transition that completed "split" started all 30 items: StepCompleted + 30 StepStarted,
        // in one multi-row INSERT.
        var logged = await host.Reader.ReadPipelineAsync(id, 0, 1000);
        AssertGaplessSeq(logged);
        var splitDone = logged.OfType<StepCompleted>().Single(e => e.StepName == "split").Seq;
        Assert.Equal(30, logged.Count(e => e is StepStarted { StepName: "each" } started && started.Seq > splitDone && started.Seq <= splitDone + 30));
        Assert.Equal(logged.Select(e => e.Position).Order(), logged.Select(e => e.Position));

        // Replayed and delivered exactly as decided: same seq, position, type and instant.
        var delivered = host.Events.For(id).OrderBy(e => e.Seq).ToList();
        Assert.Equal(
            logged.Select(e => (e.Seq, e.Position, e.EventType, e.Timestamp)),
            delivered.Select(e => (e.Seq, e.Position, e.EventType, e.Timestamp)));
        var byPosition = await host.Reader.ReadAllAsync(logged[0].Position - 1, 1000);
        Assert.Equal(logged.Select(e => e.Timestamp), byPosition.Where(e => e.PipelineId == id).Select(e => e.Timestamp));

        // The row's own columns (written by the multi-row INSERT, not taken from the JSON) agree.
        await using var context = await host.Databases.CreateDbContextAsync();
        var columns = await context.Events.AsNoTracking().Where(e => e.PipelineId == id).OrderBy(e => e.Seq).Select(e => new { e.Seq, e.Type, e.Timestamp }).ToListAsync();
        Assert.Equal(logged.Select(e => (e.Seq, e.EventType)), columns.Select(c => (c.Seq, c.Type)));
        // Both providers keep less than .NET's 100 ns (PostgreSQL microseconds, EF Core's SQLite form less).
        Assert.All(logged.Zip(columns), pair => Assert.True(Math.Abs((pair.First.Timestamp - pair.Second.Timestamp).TotalMilliseconds) < 1, $"seq {pair.First.Seq}: {pair.First.Timestamp:O} logged, {pair.Second.Timestamp:O} in the column"));
    }
}

public sealed class When_a_deliverer_lost_its_lease_while_stalled
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_give_no_positions_after_those_of_the_deliverer_that_took_over(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        await using var context = new BusFlowDbContext(db.ContextOptions());
        var pipelineId = NewId.NextGuid();
        context.Events.Add(new PipelineEventRecord { PipelineId = pipelineId, Seq = 1, Type = "StepProgress", Timestamp = DateTimeOffset.UtcNow, Payload = "{}" });
        await context.SaveChangesAsync();
        var now = DateTimeOffset.UtcNow;

        async Task<List<PipelineEventRecord>> PositionAs(string owner)
        {
            await using var transaction = await context.Database.BeginTransactionAsync();
            var rows = await StoreProvider.PositionEventsAsync(
                context.Database.GetDbConnection(), transaction.GetDbTransaction(), provider, OutboxDelivery.LeaseName, owner, now, 100, CancellationToken.None);
            await transaction.CommitAsync();
            return rows;
        }

        // "stalled" believed it still held the lease; "successor" took it over meanwhile.
        await context.Leases.Where(l => l.Name == OutboxDelivery.LeaseName)
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.Owner, "successor").SetProperty(l => l.ExpiresAt, now.AddSeconds(10)));
        Assert.Empty(await PositionAs("stalled"));
        Assert.Equal(0, (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.PositionCounter)).LastPosition);

        // An expired lease is nobody's: its last holder gives no positions either.
        await context.Leases.Where(l => l.Name == OutboxDelivery.LeaseName)
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.ExpiresAt, now.AddSeconds(-1)));
        Assert.Empty(await PositionAs("successor"));

        await context.Leases.Where(l => l.Name == OutboxDelivery.LeaseName)
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.ExpiresAt, now.AddSeconds(10)));
        var positioned = Assert.Single(await PositionAs("successor"));
        Assert.Equal(1, positioned.Position);
        Assert.Equal(1, (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.PositionCounter)).LastPosition);
    }
}

public sealed class When_a_group_writes_its_rows_without_SaveChanges
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_write_what_SaveChanges_would_and_refuse_a_stale_version(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        var options = db.ContextOptions();
        var id = NewId.NextGuid();
        var started = new DateTimeOffset(2026, 12, 2, 10, 0, 0, TimeSpan.FromHours(2));
        var outbox = new OutboxMessageRecord { MessageId = NewId.NextGuid(), PipelineId = id, MessageType = "m", Body = "{}", CreatedAt = started };
        await WriteAsync(context =>
        {
            context.Pipelines.Add(new PipelineState
            {
                CorrelationId = id,
                CurrentState = "Running",
                Status = PipelineStatus.Running,
                Definition = "d",
                StartedAt = started,
                Tags = new() { ["tenant"] = "t" },
                Steps = [new StepRun { Name = "a", Status = StepStatus.Running }],
                Version = 1,
            });
            context.Outbox.Add(outbox);
            context.Inbox.Add(new InboxRecord { MessageId = outbox.MessageId, Consumer = "c", ReceivedAt = started });
            // Not a shape the group writes itself: left to SaveChanges in the same transaction.
            context.Suspensions.Add(new SuspensionRecord { SuspendId = NewId.NextGuid(), PipelineId = id, StepName = "a", CreatedAt = started.ToUniversalTime() });
        });
        Assert.True(outbox.Id > 0);

        // Two deciders read version 1; the first to write wins, the second finds the version moved.
        await using var first = new BusFlowDbContext(options);
        await using var second = new BusFlowDbContext(options);
        var mine = await first.Pipelines.SingleAsync(p => p.CorrelationId == id);
        var theirs = await second.Pipelines.SingleAsync(p => p.CorrelationId == id);
        mine.Steps[0].Status = StepStatus.Completed;
        mine.Version++;
        mine.FinishedAt = started.AddMinutes(1);
        first.Outbox.Attach(new OutboxMessageRecord { Id = outbox.Id }).Entity.DeliveredAt = started.AddMinutes(1);
        await CommitAsync(first);
        theirs.Status = PipelineStatus.Failed;
        theirs.Version++;
        await Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => CommitAsync(second));

        await using var check = new BusFlowDbContext(options);
        var stored = await check.Pipelines.AsNoTracking().SingleAsync(p => p.CorrelationId == id);
        Assert.Equal((2, PipelineStatus.Running, StepStatus.Completed, "t"), (stored.Version, stored.Status, stored.Steps[0].Status, stored.Tags["tenant"]));
        Assert.Equal(started.AddMinutes(1), stored.FinishedAt);
        Assert.Equal(started, stored.StartedAt);
        Assert.Equal(started.AddMinutes(1), (await check.Outbox.AsNoTracking().SingleAsync(o => o.Id == outbox.Id)).DeliveredAt);
        Assert.Equal(1, await check.Inbox.CountAsync(i => i.MessageId == outbox.MessageId && i.Consumer == "c"));
        Assert.Equal(1, await check.Suspensions.CountAsync(s => s.PipelineId == id));

        async Task WriteAsync(Action<BusFlowDbContext> add)
        {
            await using var context = new BusFlowDbContext(options);
            add(context);
            await CommitAsync(context);
        }

        async Task CommitAsync(BusFlowDbContext context)
        {
            await context.Database.OpenConnectionAsync();
            await using var transaction = await context.Database.BeginTransactionAsync();
            await GroupRows.WriteAsync(context, transaction.GetDbTransaction(), provider, CancellationToken.None);
            Assert.All(context.ChangeTracker.Entries().Where(e => e.State != EntityState.Unchanged), e => Assert.IsType<SuspensionRecord>(e.Entity));
            await context.SaveChangesAsync();
            await transaction.CommitAsync();
        }
    }
}

public sealed class When_two_transactions_write_events_at_once
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_give_the_later_commit_the_later_positions(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        var options = db.ContextOptions();
        await using var first = new BusFlowDbContext(options);
        var (a, b) = (NewId.NextGuid(), NewId.NextGuid());

        await first.Database.OpenConnectionAsync();
        await using var firstTransaction = await first.Database.BeginTransactionAsync();
        await StoreProvider.InsertEventsAsync(first.Database.GetDbConnection(), firstTransaction.GetDbTransaction(), provider, [Row(a, 1), Row(a, 2)], CancellationToken.None);

        var second = Task.Run(async () =>
        {
            await using var context = new BusFlowDbContext(options);
            await context.Database.OpenConnectionAsync();
            await using var transaction = await context.Database.BeginTransactionAsync();
            await StoreProvider.InsertEventsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), provider, [Row(b, 1)], CancellationToken.None);
            await transaction.CommitAsync();
        });

        // The second waits for the first to end: had it taken positions 3 and committed, a reader
        // would resume after 3 and never see 1 and 2, which commit a moment later.
        await Task.Delay(500);
        Assert.False(second.IsCompleted);
        await using (var reader = new BusFlowDbContext(options))
        {
            Assert.Empty(await reader.Events.AsNoTracking().Where(e => e.Position != null).ToListAsync());
        }

        await firstTransaction.CommitAsync();
        await second.WaitAsync(TimeSpan.FromSeconds(30));
        await using (var reader = new BusFlowDbContext(options))
        {
            var rows = await reader.Events.AsNoTracking().OrderBy(e => e.Position).Select(e => new { e.Position, e.PipelineId, e.Seq }).ToListAsync();
            Assert.Equal([new { Position = (long?)1, PipelineId = a, Seq = 1L }, new { Position = (long?)2, PipelineId = a, Seq = 2L }, new { Position = (long?)3, PipelineId = b, Seq = 1L }], rows);
            Assert.Equal(3, (await reader.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.PositionCounter)).LastPosition);
        }
    }

    private static PipelineEventRecord Row(Guid pipelineId, long seq) =>
        new() { PipelineId = pipelineId, Seq = seq, Type = nameof(StepProgress), Timestamp = DateTimeOffset.UtcNow, Payload = "{}" };
}

public sealed class When_the_answer_to_a_group_commit_is_lost
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_still_publish_the_rows_that_it_committed_with_positions(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var loses = new LosesOneCommitAnswer(db.ContextOptions());
        await using var host = await StoreHost.Start(db.Options(o => o.Retention = null), b =>
        {
            b.Services.ConfigureDbContext<BusFlowDbContext>(o => o.AddInterceptors(loses));
            b.AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
                .AddPipeline("three", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w")).Then("c", s => s.Worker("w")));
        });
        var first = await host.RunPipeline("three");

        await loses.ArmAsync();
        var ids = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await host.StartPipeline("three"));
        }

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id));
        }

        // The group whose commit answer was lost did commit rows with positions, which were never
        // handed to the delivery; its members were tried again alone and found what it committed,
        // and the delivery read the rows from the store.
        Assert.Equal(1, loses.Lost);
        foreach (var id in ids)
        {
            var events = host.Events.For(id).DistinctBy(e => e.Seq).OrderBy(e => e.Seq).ToList();
            AssertGaplessSeq(events);
            Assert.Equal(events.Count, (await host.Reader.ReadPipelineAsync(id, 0, 100)).Count);
        }
    }

    /// <summary>
    /// Throws from the first commit, once armed, that moved the position counter (a group
    /// that wrote event rows), after it committed: as if the database's answer to COMMIT was lost on
    /// the way.
    /// </summary>
    private sealed class LosesOneCommitAnswer(DbContextOptions<BusFlowDbContext> plain) : DbTransactionInterceptor
    {
        private long _seen = long.MaxValue;
        private int _lost;

        public int Lost => Volatile.Read(ref _lost);

        public async Task ArmAsync() => Interlocked.Exchange(ref _seen, await LastPositionAsync(CancellationToken.None));

        public override async Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            if (Lost > 0 || Interlocked.Read(ref _seen) == long.MaxValue)
            {
                return;
            }

            var last = await LastPositionAsync(cancellationToken);
            if (last > Interlocked.Exchange(ref _seen, last) && Interlocked.Exchange(ref _lost, 1) == 0)
            {
                throw new InvalidOperationException("The answer to COMMIT was lost (test).");
            }
        }

        private async Task<long> LastPositionAsync(CancellationToken cancellationToken)
        {
            await using var db = new BusFlowDbContext(plain);
            return await db.Leases.AsNoTracking().Where(l => l.Name == OutboxDelivery.PositionCounter).Select(l => l.LastPosition).SingleAsync(cancellationToken);
        }
    }
}

/// <summary>The tenant tag is kept in columns of its own, so one tenant's pipelines and events are read alone (issue 13).</summary>
public sealed class When_pipelines_carry_a_tenant_tag
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_read_one_tenants_pipelines_and_events_alone_in_order(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("two", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w"))));
        var byTenant = new Dictionary<string, List<Guid>> { ["a"] = [], ["b"] = [], [""] = [] };
        for (var i = 0; i < 3; i++)
        {
            foreach (var (tenant, ids) in byTenant)
            {
                var id = await host.StartPipeline("two", new { large = new string('x', 10_000) }, tenant == "" ? null : new() { [PipelineTags.Tenant] = tenant, ["other"] = "x" });
                await host.Events.WaitForEnd(id);
                ids.Add(id);
            }
        }

        var page = await host.Reader.ReadAllStoredAsync(0, 1000, new StoredEventFilter("a"));
        var all = await host.Reader.ReadAllStoredAsync(0, 1000);
        var expected = all.Events.Where(e => byTenant["a"].Contains(e.PipelineId)).Select(e => e.Position).ToList();
        Assert.Equal(expected, page.Events.Select(e => e.Position));
        Assert.All(page.Events, e => Assert.Equal("a", e.Tenant));
        Assert.All(all.Events, e => Assert.Equal(byTenant["a"].Contains(e.PipelineId) ? "a" : byTenant["b"].Contains(e.PipelineId) ? "b" : null, e.Tenant));
        Assert.Equal(expected.Skip(4), (await host.Reader.ReadAllStoredAsync(expected[3], 1000, new StoredEventFilter("a"))).Events.Select(e => e.Position));

        // A filtered page that is not full looked at every row up to the store's last position.
        Assert.Equal(all.Events[^1].Position, page.Last);
        Assert.Equal(expected[1], (await host.Reader.ReadAllStoredAsync(0, 2, new StoredEventFilter("a"))).Last);

        // Types and tags filtered in SQL, alone and with the tenant, as the events themselves say.
        var events = all.Events.ToDictionary(e => e.Position, e => e.Read()!);
        foreach (var filter in new StoredEventFilter[]
        {
            new(Types: ["StepCompleted", "PipelineCompleted"]),
            new(Tags: new Dictionary<string, string> { ["other"] = "x" }),
            new(Tags: new Dictionary<string, string> { ["other"] = "x", [PipelineTags.Tenant] = "b" }),
            new(Tags: new Dictionary<string, string> { ["other"] = "y" }),
            new("a", ["StepStarted"], new Dictionary<string, string> { ["other"] = "x" }),
        })
        {
            var matching = events.Values.Where(e =>
                (filter.Tenant is null || e.Tags.GetValueOrDefault(PipelineTags.Tenant) == filter.Tenant)
                && (filter.Types is null || filter.Types.Contains(e.EventType))
                && (filter.Tags is null || filter.Tags.All(t => e.Tags.GetValueOrDefault(t.Key) == t.Value))).Select(e => e.Position).ToList();
            var read = await host.Reader.ReadAllStoredAsync(0, 1000, filter);
            Assert.Equal(matching, read.Events.Select(e => e.Position));
            Assert.Equal(filter.Tags is { } t && t["other"] == "y" ? 0 : 1, Math.Sign(matching.Count));
        }

        var store = host.Services.GetRequiredService<PipelineStore>();
        var listed = await store.ListRecentAsync(2, "b", CancellationToken.None);
        Assert.Equal(Enumerable.Reverse(byTenant["b"]).Take(2), listed.Select(p => p.CorrelationId));
        Assert.All(listed, p => Assert.Equal(("b", null, PipelineStatus.Completed, 2), (p.Tenant, p.Input, p.Status, p.Steps.Count)));
        Assert.Equal(9, (await store.ListRecentAsync(50, null, CancellationToken.None)).Count);
    }

    [Fact]
    public async Task Should_list_every_property_of_a_pipeline_but_its_input_and_map_items()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        await using var host = await StoreHost.StartWithOneStep(db.Options());
        var state = FilledStates.Pipeline();
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            context.Pipelines.Add(state);
            await context.SaveChangesAsync();
        }

        var store = host.Services.GetRequiredService<PipelineStore>();
        var whole = (await store.FindAsync(state.CorrelationId))!;
        var listed = Assert.Single(await store.ListRecentAsync(10, state.Tenant, CancellationToken.None));
        Assert.Null(listed.Input);
        Assert.Equal(Assert.Single(state.Steps).Items.Count, Assert.Single(whole.Steps).Items.Count);
        Assert.Empty(Assert.Single(listed.Steps).Items);
        whole.Input = null;
        whole.Steps[0].Items = [];
        Assert.Equal(FilledStates.Json(whole), FilledStates.Json(listed));
    }

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_fill_the_tenant_of_rows_written_before_the_migration(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var context = new BusFlowDbContext(db.ContextOptions());
        var migrations = context.Database.GetMigrations().ToList();
        var migrator = Microsoft.EntityFrameworkCore.Infrastructure.AccessorExtensions.GetService<Microsoft.EntityFrameworkCore.Migrations.IMigrator>(context);
        await migrator.MigrateAsync(migrations[migrations.FindIndex(m => m.EndsWith("_TenantColumns", StringComparison.Ordinal)) - 1]);

        var (tenanted, plain) = (Guid.NewGuid(), Guid.NewGuid());
        foreach (var (id, tags, position) in new[] { (tenanted, "{\"tenant\":\"t-1\",\"x\":\"y\"}", 1L), (plain, "{\"x\":\"tenant\"}", 2L) })
        {
            var started = new PipelineStarted
            {
                PipelineId = id,
                Seq = 1,
                Timestamp = DateTimeOffset.UtcNow,
                Definition = "d",
                Tags = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, string>>(tags)!,
            };
            await context.Database.ExecuteSqlRawAsync(
                """INSERT INTO busflow_pipelines ("PipelineId", "CurrentState", "Version", "Status", "Definition", "Tags", "LastSeq", "StartedAt", "Steps") VALUES ({0}, 'Running', 1, 'Running', 'd', {1}, 1, {2}, '[]')""",
                id, tags, provider == StoreProviderKind.Postgres ? DateTimeOffset.UtcNow : 0L);
            await context.Database.ExecuteSqlRawAsync(
                """INSERT INTO busflow_events ("PipelineId", "Seq", "Type", "Timestamp", "Payload", "Position") VALUES ({0}, 1, 'PipelineStarted', {1}, {2}, {3})""",
                id, provider == StoreProviderKind.Postgres ? DateTimeOffset.UtcNow : 0L, PipelineEventJson.Serialize(started), position);
        }

        await migrator.MigrateAsync();
        Assert.Equal(["t-1", null], await context.Database.SqlQueryRaw<string?>("""SELECT "Tenant" AS "Value" FROM busflow_pipelines ORDER BY CASE WHEN "Tenant" IS NULL THEN 1 ELSE 0 END""").ToListAsync());
        Assert.Equal(["t-1", null], await context.Database.SqlQueryRaw<string?>("""SELECT "Tenant" AS "Value" FROM busflow_events ORDER BY "Position" """).ToListAsync());
    }
}

/// <summary>
/// A start's first try does not look its pipeline up (a round trip per pipeline); a start of a
/// pipeline that exists fails its insert on the key, its group is tried again member by member,
/// and the start's retry finds the pipeline and is ignored.
/// </summary>
public sealed class When_a_start_arrives_again_as_a_new_message
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_start_the_pipeline_once_and_lose_none_of_the_starts_grouped_with_it(StoreProviderKind provider)
    {
        var runs = new ConcurrentDictionary<Guid, int>();
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("w", ctx =>
            {
                runs.AddOrUpdate(ctx.PipelineId, 1, (_, n) => n + 1);
                return Task.FromResult(StepResult.Success());
            }, concurrency: 16)
            .AddPipeline("once", p => p.Then("w")));

        var twice = new StartPipeline { PipelineId = NewId.NextGuid(), Definition = "once" };
        await host.Bus.Publish(twice);
        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(twice.PipelineId));

        // The same start again (a new message, not a redelivery), among 20 new ones that may share its group.
        var others = Enumerable.Range(0, 20).Select(_ => new StartPipeline { PipelineId = NewId.NextGuid(), Definition = "once" }).ToList();
        await Task.WhenAll(others.Take(10).Select(s => host.Bus.Publish(s)).Append(host.Bus.Publish(twice)).Concat(others.Skip(10).Select(s => host.Bus.Publish(s))));
        foreach (var start in others)
        {
            Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(start.PipelineId, TimeSpan.FromSeconds(60)));
        }

        await Task.Delay(500);
        Assert.All(others.Append(twice), s => Assert.Equal(1, runs[s.PipelineId]));
        var logged = await host.Reader.ReadPipelineAsync(twice.PipelineId, 0, 100);
        AssertGaplessSeq(logged);
        Assert.Single(logged.OfType<PipelineStarted>());
        Assert.Single(logged.OfType<PipelineCompleted>());
    }
}

/// <summary>
/// The position counter is a row of its own (<see cref="OutboxDelivery.PositionCounter"/>), apart
/// from the outbox lease's row, so the delivery's marks do not wait for commits holding the counter.
/// </summary>
public sealed class When_the_position_counter_moves_to_its_own_row
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_continue_from_the_positions_given_before_and_leave_the_lease_free_while_a_commit_holds_it(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var migrations = context.Database.GetMigrations().ToList();
            var migrator = Microsoft.EntityFrameworkCore.Infrastructure.AccessorExtensions.GetService<Microsoft.EntityFrameworkCore.Migrations.IMigrator>(context);
            await migrator.MigrateAsync(migrations[migrations.FindIndex(m => m.EndsWith("_PositionCounterRow", StringComparison.Ordinal)) - 1]);
            // An older version gave positions up to 41 on the outbox lease's row.
            await context.Database.ExecuteSqlRawAsync("""UPDATE busflow_leases SET "LastPosition" = 41 WHERE "Name" = 'outbox'""");
            await migrator.MigrateAsync();
            Assert.Equal(41, (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.PositionCounter)).LastPosition);
        }

        IReadOnlyList<PipelineEvent> logged;
        await using (var host = await StoreHost.StartWithOneStep(db.Options()))
        {
            var id = await host.RunPipeline("one");
            logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
        }

        Assert.Equal(Enumerable.Range(42, logged.Count).Select(p => (long)p), logged.Select(e => e.Position));
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            // The outbox lease's row no longer counts.
            Assert.Equal(41, (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.LeaseName)).LastPosition);
            Assert.Equal(41 + logged.Count, (await context.Leases.AsNoTracking().SingleAsync(l => l.Name == OutboxDelivery.PositionCounter)).LastPosition);

            // A counter left behind (an older version kept counting on the outbox lease's row) starts past the log's positions.
            await context.Database.ExecuteSqlRawAsync("""UPDATE busflow_leases SET "LastPosition" = 3 WHERE "Name" = 'positions'""");
        }

        await using (var restarted = await StoreHost.StartWithOneStep(db.Options()))
        {
            var after = await restarted.RunPipeline("one");
            Assert.Equal(41 + logged.Count + 1, (await restarted.Reader.ReadPipelineAsync(after, 0, 100))[0].Position);
        }

        if (provider == StoreProviderKind.Postgres)
        {
            // A commit holding the counter (taken for its event rows) leaves the lease's row free.
            await using var holder = new BusFlowDbContext(db.ContextOptions());
            await using var transaction = await holder.Database.BeginTransactionAsync();
            await holder.Database.ExecuteSqlRawAsync("""UPDATE busflow_leases SET "LastPosition" = "LastPosition" WHERE "Name" = 'positions'""");
            await using var other = new BusFlowDbContext(db.ContextOptions());
            using var within = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            Assert.Equal(1, await other.Leases.Where(l => l.Name == OutboxDelivery.LeaseName).ExecuteUpdateAsync(s => s.SetProperty(l => l.DeliveredUpTo, l => l.DeliveredUpTo), within.Token));
            await transaction.RollbackAsync();
        }
    }
}
