using BusFlow.Contracts;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

public sealed class When_replaying_by_position_under_concurrent_writers
{
    [SkippableTheory]
    [AllStores]
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

public sealed class When_the_log_holds_a_row_this_version_cannot_read
{
    [SkippableTheory]
    [AllStores]
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
    [SkippableTheory]
    [AllStores]
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

/// <summary>The tenant tag is kept in columns of its own, so one tenant's pipelines and events are read alone (issue 13).</summary>
public sealed class When_pipelines_carry_a_tenant_tag
{
    [SkippableTheory]
    [AllStores]
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

    // SQLite and PostgreSQL only: their stores existed before the migration; SQL Server's begin after it.
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
