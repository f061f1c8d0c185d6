using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

/// <summary>
/// A map step's items are rows of their own (busflow_work_items): a transition writes the items it
/// changed, not the whole map, so a map's cost grows with its items, not with their square (issue 13).
/// </summary>
public sealed class When_a_map_step_runs_many_items
{
    private const int Items = 200;

    private static void Doubling(BusFlowBuilder b) => b
        .AddWorker("double", ctx => Task.FromResult(StepResult.Success(ctx.GetItem<int>() * 2)), concurrency: 8)
        .AddPipeline("doubling", p => p.Map("each", s => s.Worker("double").Over("input.numbers").MaxParallelism(8)));

    [Theory]
    [InlineData(StoreProviderKind.Sqlite, true)]
    [InlineData(StoreProviderKind.Postgres, true)]
    [InlineData(StoreProviderKind.Postgres, false)]
    public async Task Should_write_each_item_as_it_changes_and_never_the_whole_map(StoreProviderKind provider, bool cache)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        await CountWritesAsync(db, provider);
        await using var host = await StoreHost.Start(db.Options(o => o.CachePipelineStates = cache), Doubling);

        var id = await host.RunPipeline("doubling", new { numbers = Enumerable.Range(0, Items).ToArray() }, TimeSpan.FromSeconds(90));

        // Whole and in order through the status read.
        var state = (await host.Services.GetRequiredService<PipelineStore>().FindAsync(id))!;
        var step = Assert.Single(state.Steps);
        Assert.Equal(Enumerable.Range(0, Items), step.Items.Select(i => i.Index!.Value));
        Assert.All(step.Items, i => Assert.Equal((WorkStatus.Completed, 1, i.Index * 2), (i.Status, i.Attempt, i.Result!.Value.GetInt32())));
        Assert.Equal(Enumerable.Range(0, Items).Select(n => n * 2), step.Result!.Value.EnumerateArray().Select(e => e.GetInt32()));

        await using var context = new BusFlowDbContext(db.ContextOptions());
        // The pipeline row's step tree holds the count, not the items.
        var tree = await context.Database.SqlQueryRaw<string>("SELECT \"Steps\" AS \"Value\" FROM busflow_pipelines").SingleAsync();
        Assert.Contains($"\"itemRows\":{Items}", tree, StringComparison.Ordinal);
        // (The finished step's result, the 200 doubled numbers, stays in the tree; the items inline were some 50,000 characters.)
        Assert.True(tree.Length < 5_000, $"the step tree is {tree.Length} characters: {tree}");

        // Each item inserted once, then written as it was started and as it completed (a transition
        // writing the whole map would write every item again in each of some 2 x 200 transitions).
        var writes = await context.Database.SqlQueryRaw<string>("SELECT op AS \"Value\" FROM item_writes").ToListAsync();
        Assert.Equal(Items, writes.Count(w => w == "INSERT"));
        Assert.InRange(writes.Count(w => w == "UPDATE"), Items, 2 * Items);
        AssertGaplessSeq(await host.Reader.ReadPipelineAsync(id, 0, 10_000));
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_carry_on_a_map_an_older_version_wrote_inside_the_pipeline_row(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(o => o.CachePipelineStates = false), b => b
            .AddWorker("ask", ctx => Task.FromResult(ctx.Resume is null ? StepResult.Suspend("ok?") : StepResult.Success(ctx.GetItem<string>() + "!")))
            .AddPipeline("asks", p => p.Map("each", s => s.Worker("ask").Over("input.names"))));
        var id = await host.StartPipeline("asks", new { names = new[] { "a", "b", "c" } });
        var suspended = new List<StepSuspended>();
        for (var i = 0; i < 3; i++)
        {
            suspended.Add(await host.Events.WaitFor<StepSuspended>(id, e => !suspended.Contains(e)));
        }

        // What a version before the item rows stored: the items inside the step tree, no rows.
        var store = host.Services.GetRequiredService<PipelineStore>();
        var before = (await store.FindAsync(id))!;
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var inline = JsonSerializer.Serialize(before.Steps.Select(s => new StepRun { Name = s.Name, Status = s.Status, StartedAt = s.StartedAt, Items = [.. s.Items] }).ToList(), PipelineEventJson.Options);
            Assert.Equal(3, await context.WorkItems.Where(w => w.PipelineId == id).ExecuteDeleteAsync());
            await context.Database.ExecuteSqlRawAsync("UPDATE busflow_pipelines SET \"Steps\" = {0}", inline);
        }

        var read = (await store.FindAsync(id))!;
        Assert.Equal(before.Steps[0].Items.Select(i => (i.Index, i.Status, i.SuspendId)), read.Steps[0].Items.Select(i => (i.Index, i.Status, i.SuspendId)));

        foreach (var s in suspended)
        {
            await host.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = s.SuspendId, Payload = JsonSerializer.SerializeToElement(true) });
        }

        var completed = Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id, TimeSpan.FromSeconds(30)));
        Assert.Equal(["a!", "b!", "c!"], completed.Outputs!["each"].EnumerateArray().Select(e => e.GetString()));
        // Written since: in rows.
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            Assert.Equal(3, await context.WorkItems.CountAsync(w => w.PipelineId == id));
        }
    }

    [Fact]
    public async Task Should_write_only_the_items_a_transition_put_in_place_of_those_remembered()
    {
        var cache = new PipelineStateCache(new BusFlowStoreOptions());
        var committed = new PipelineState
        {
            CorrelationId = Guid.NewGuid(),
            Status = PipelineStatus.Running,
            Steps = [new StepRun { Name = "one" }, new StepRun { Name = "each", Items = [.. Enumerable.Range(0, 5).Select(i => new WorkItem { Index = i })] }],
        };
        cache.Committed([(committed, false)]);
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        await db.MigrateAsync();
        await using var context = new BusFlowDbContext(db.ContextOptions());

        var copy = cache.Attach(context, committed.CorrelationId)!;
        // Shared, not copied, while nothing changes them.
        Assert.All(copy.Steps[1].Items.Zip(committed.Steps[1].Items), pair => Assert.Same(pair.First, pair.Second));
        var changed = copy.Steps[1].Items[3].Copy();
        changed.Status = WorkStatus.Running;
        copy.Steps[1].Items[3] = changed;
        copy.LastSeq++;
        context.ChangeTracker.DetectChanges();
        WorkItemRows.Track(context);

        var row = Assert.Single(context.ChangeTracker.Entries<WorkItemRecord>());
        Assert.Equal((EntityState.Modified, 1, 3), (row.State, row.Entity.Step, row.Entity.ItemIndex));
        Assert.Equal(WorkStatus.Running, JsonSerializer.Deserialize<WorkItem>(row.Entity.Body, PipelineEventJson.Options)!.Status);
    }

    /// <summary>Records every INSERT and UPDATE of a row of busflow_work_items in item_writes.</summary>
    private static async Task CountWritesAsync(TestDatabase db, StoreProviderKind provider)
    {
        string[] statements = provider switch
        {
            StoreProviderKind.Postgres => [
                "CREATE TABLE item_writes (op text)",
                "CREATE FUNCTION count_item_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO item_writes VALUES (TG_OP); RETURN NEW; END $$",
                "CREATE TRIGGER item_written AFTER INSERT OR UPDATE ON busflow_work_items FOR EACH ROW EXECUTE FUNCTION count_item_writes()",
            ],
            StoreProviderKind.SqlServer => [
                "CREATE TABLE item_writes (op nvarchar(16))",
                "CREATE TRIGGER item_written ON busflow_work_items AFTER INSERT, UPDATE AS BEGIN SET NOCOUNT ON; INSERT INTO item_writes SELECT CASE WHEN EXISTS (SELECT 1 FROM deleted) THEN 'UPDATE' ELSE 'INSERT' END FROM inserted; END",
            ],
            _ => [
                "CREATE TABLE item_writes (op text)",
                "CREATE TRIGGER item_inserted AFTER INSERT ON busflow_work_items BEGIN INSERT INTO item_writes VALUES ('INSERT'); END",
                "CREATE TRIGGER item_updated AFTER UPDATE ON busflow_work_items BEGIN INSERT INTO item_writes VALUES ('UPDATE'); END",
            ],
        };
        await using var context = new BusFlowDbContext(db.ContextOptions());
        foreach (var sql in statements)
        {
            await context.Database.ExecuteSqlRawAsync(sql);
        }
    }
}
