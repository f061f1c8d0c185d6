using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Npgsql;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

/// <summary>
/// A process does not read back the pipeline rows it just committed (issue 12 item 2), and a
/// remembered state that another process changed since is caught by the version check and read again.
/// </summary>
public sealed class When_a_process_transitions_pipelines_it_committed_last
{
    private static void ThreeSteps(BusFlowBuilder b) => b
        .AddWorker("w", ctx => Task.FromResult(StepResult.Success(ctx.StepName)))
        .AddPipeline("three", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w")).Then("c", s => s.Worker("w")));

    [SkippableTheory]
    [AllStores]
    public async Task Should_not_read_their_rows_back(StoreProviderKind provider)
    {
        var reads = new Dictionary<bool, int>();
        foreach (var cache in new[] { false, true })
        {
            await using var db = await TestDatabase.Create(provider);
            // Listening from before the start (EF Core decides per context whether anyone listens), counting from after it.
            using var counter = new PipelineReads(db);
            await using var host = await StoreHost.Start(db.Options(o => o.CachePipelineStates = cache), ThreeSteps);
            var atStart = counter.Count;
            await host.RunPipeline("three");
            reads[cache] = counter.Count - atStart;
        }

        // Without the cache each of the three steps' outcomes reads the pipeline back; with it none
        // does, and the start does not look for its pipeline either (its insert would fail on the key).
        Assert.True(reads[false] >= 3, $"{reads[false]} reads without the cache");
        Assert.Equal(0, reads[true]);
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_catch_a_state_another_process_changed_on_its_version_and_lose_nothing(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("ask", ctx => Task.FromResult(ctx.Resume is null ? StepResult.Suspend("approve?") : StepResult.Success(new { approved = true })))
            .AddWorker("after", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("approval", p => p.Then("ask").Then("after")));
        var id = await host.StartPipeline("approval");
        var suspended = await host.Events.WaitFor<StepSuspended>(id);

        // Another process commits a transition of this pipeline: the row's version moves on, and the
        // state this process remembers is stale.
        int bumped;
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var row = await context.Pipelines.SingleAsync(p => p.CorrelationId == id);
            bumped = row.Version + 10;
            await context.Pipelines.Where(p => p.CorrelationId == id).ExecuteUpdateAsync(u => u.SetProperty(p => p.Version, bumped));
        }

        await host.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = suspended.SuspendId, Payload = JsonSerializer.SerializeToElement(new { ok = true }) });
        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id, TimeSpan.FromSeconds(30)));

        // The answer was applied on top of the other process's commit, not over it.
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var row = await context.Pipelines.AsNoTracking().SingleAsync(p => p.CorrelationId == id);
            Assert.True(row.Version > bumped, $"version {row.Version}, the other process left {bumped}");
        }

        var logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
        AssertGaplessSeq(logged);
        Assert.Single(logged.OfType<PipelineCompleted>());
    }

    [Fact]
    public async Task Should_remember_running_pipelines_only_as_copies_and_never_grow_past_its_capacity()
    {
        var cache = new PipelineStateCache(new BusFlowStoreOptions());
        static PipelineState State(PipelineStatus status) => new()
        {
            CorrelationId = Guid.NewGuid(),
            Status = status,
            Version = 3,
            Steps = [new StepRun { Name = "a", Items = [new WorkItem { Attempt = 1 }] }],
        };

        var running = State(PipelineStatus.Running);
        var finished = State(PipelineStatus.Completed);
        cache.Committed([(running, false), (finished, false)]);
        Assert.Equal(1, cache.Count);

        // A transition gets a copy: changing it leaves the remembered state as committed.
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        await db.MigrateAsync();
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var copy = cache.Attach(context, running.CorrelationId)!;
            Assert.NotSame(running, copy);
            // Tracked like a row just read: its write is checked on the version it was committed with.
            Assert.NotEqual(EntityState.Added, context.Entry(copy).State);
            Assert.Equal(3, context.Entry(copy).Property(p => p.Version).OriginalValue);
            copy.Steps[0].Items[0].Attempt = 2;
            Assert.Same(copy, cache.Attach(context, running.CorrelationId));
        }

        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            Assert.Equal(1, cache.Attach(context, running.CorrelationId)!.Steps[0].Items[0].Attempt);
            Assert.Null(cache.Attach(context, finished.CorrelationId));
        }

        // Deleted, forgotten, or past the capacity: gone.
        cache.Committed([(running, true)]);
        Assert.Equal(0, cache.Count);
        cache.Committed([.. Enumerable.Range(0, PipelineStateCache.Capacity + 10).Select(_ => (State(PipelineStatus.Running), false))]);
        Assert.InRange(cache.Count, 1, PipelineStateCache.Capacity);
        var last = State(PipelineStatus.Running);
        cache.Committed([(last, false)]);
        cache.Forget([last.CorrelationId]);
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            Assert.Null(cache.Attach(context, last.CorrelationId));
        }
    }

    [Fact]
    public async Task Should_copy_every_property_of_a_state_its_steps_and_their_items()
    {
        var cache = new PipelineStateCache(new BusFlowStoreOptions());
        var state = FilledStates.Pipeline();
        state.Status = PipelineStatus.Running;
        cache.Committed([(state, false)]);
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        await db.MigrateAsync();
        await using var context = new BusFlowDbContext(db.ContextOptions());
        var copy = cache.Attach(context, state.CorrelationId)!;
        Assert.NotSame(state, copy);
        Assert.Equal(FilledStates.Json(state), FilledStates.Json(copy));
    }

    /// <summary>Counts the queries that read <c>busflow_pipelines</c> in one test database, from EF Core's diagnostics.</summary>
    private sealed class PipelineReads : IObserver<DiagnosticListener>, IObserver<KeyValuePair<string, object?>>, IDisposable
    {
        private readonly string _database;
        private readonly IDisposable _all;
        private readonly ConcurrentBag<IDisposable> _subscriptions = [];
        private int _count;

        public PipelineReads(TestDatabase db)
        {
            _database = db.Provider switch
            {
                StoreProviderKind.Sqlite => new SqliteConnectionStringBuilder(db.ConnectionString).DataSource,
                StoreProviderKind.SqlServer => new Microsoft.Data.SqlClient.SqlConnectionStringBuilder(db.ConnectionString).InitialCatalog,
                _ => new NpgsqlConnectionStringBuilder(db.ConnectionString).Database!,
            };
            _all = DiagnosticListener.AllListeners.Subscribe(this);
        }

        public int Count => Volatile.Read(ref _count);

        public void OnNext(DiagnosticListener listener)
        {
            if (listener.Name == DbLoggerCategory.Name)
            {
                _subscriptions.Add(listener.Subscribe(this));
            }
        }

        public void OnNext(KeyValuePair<string, object?> value)
        {
            if (value.Key == RelationalEventId.CommandExecuting.Name && value.Value is CommandEventData data
                && (data.Command.CommandText.Contains("\"Steps\"", StringComparison.Ordinal) || data.Command.CommandText.Contains("[Steps]", StringComparison.Ordinal))
                && data.Command.CommandText.Contains("busflow_pipelines", StringComparison.Ordinal)
                && (data.Command.Connection?.DataSource == _database || data.Command.Connection?.Database == _database))
            {
                Interlocked.Increment(ref _count);
            }
        }

        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }

        public void Dispose()
        {
            _all.Dispose();
            foreach (var subscription in _subscriptions)
            {
                subscription.Dispose();
            }
        }
    }
}

/// <summary>
/// A transition writes the pipeline row's columns that changed, not the input and tags it left as
/// they were (issue 12: a pipeline with a large input does not write it again at every step).
/// </summary>
public sealed class When_transitions_leave_the_input_and_tags_as_they_were
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite, true)]
    [InlineData(StoreProviderKind.Postgres, true)]
    [InlineData(StoreProviderKind.Postgres, false)]
    public async Task Should_not_write_them_again(StoreProviderKind provider, bool cache)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        // A trigger on UPDATE OF a column fires whenever an UPDATE sets it, whether or not the value differs.
        await ExecuteAsync(db, provider switch
        {
            StoreProviderKind.Postgres => [
                """CREATE TABLE input_writes (n int)""",
                """CREATE FUNCTION count_input_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO input_writes VALUES (1); RETURN NEW; END $$""",
                """CREATE TRIGGER input_written AFTER UPDATE OF "Input", "Tags" ON busflow_pipelines FOR EACH ROW EXECUTE FUNCTION count_input_writes()""",
            ],
            StoreProviderKind.SqlServer => [
                """CREATE TABLE input_writes (n int)""",
                """CREATE TRIGGER input_written ON busflow_pipelines AFTER UPDATE AS BEGIN SET NOCOUNT ON; IF UPDATE("Input") OR UPDATE("Tags") INSERT INTO input_writes SELECT 1 FROM inserted; END""",
            ],
            _ => [
                """CREATE TABLE input_writes (n int)""",
                """CREATE TRIGGER input_written AFTER UPDATE OF "Input", "Tags" ON busflow_pipelines BEGIN INSERT INTO input_writes VALUES (1); END""",
            ],
        });

        var input = new { text = new string('x', 100_000) };
        var tags = new Dictionary<string, string> { ["customer"] = "c-1", ["region"] = "eu" };
        await using (var host = await StoreHost.Start(db.Options(o => o.CachePipelineStates = cache), b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success(ctx.StepName)))
            .AddPipeline("three", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w")).Then("c", s => s.Worker("w")))))
        {
            var id = await host.StartPipeline("three", input, tags);
            Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id));

            await using var context = await host.Databases.CreateDbContextAsync();
            var row = await context.Pipelines.AsNoTracking().SingleAsync(p => p.CorrelationId == id);
            Assert.Equal(JsonSerializer.Serialize(input, JsonSerializerOptions.Web), row.Input!.Value.GetRawText());
            Assert.Equal(tags, row.Tags);
            Assert.Equal(PipelineStatus.Completed, row.Status);
            Assert.All(row.Steps, s => Assert.Equal(StepStatus.Completed, s.Status));
        }

        await using var check = new BusFlowDbContext(db.ContextOptions());
        Assert.Equal(0, await check.Database.SqlQueryRaw<int>("SELECT count(*) AS \"Value\" FROM input_writes").SingleAsync());
    }

    private static async Task ExecuteAsync(TestDatabase db, string[] statements)
    {
        await using var context = new BusFlowDbContext(db.ContextOptions());
        foreach (var sql in statements)
        {
            await context.Database.ExecuteSqlRawAsync(sql);
        }
    }
}
