using BusFlow.Contracts;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

/// <summary>
/// A step whose worker is registered in the saga's process runs there without the broker round trip,
/// and its outcome commits with the pipeline's next transition (BusFlowStoreOptions.ColocateSteps).
/// </summary>
public sealed class When_a_step_runs_beside_the_saga
{
    private int _runs;
    private int _running;
    private int _mostAtOnce;

    /// <summary>Step commands and reports the bus delivered (none for a step that ran co-located).</summary>
    private readonly ConsumedMessages<ExecuteStep> _commands = new();
    private readonly ConsumedMessages<ReportStepSucceeded> _reports = new();

    private int Runs => Volatile.Read(ref _runs);

    private static readonly TimeSpan Grace = TimeSpan.FromMilliseconds(300);

    /// <summary>The outbox delivery sends a command its process did not after <see cref="Grace"/>, and looks often.</summary>
    private static void ShortGrace(BusFlowStoreOptions o) => (o.DirectSendGrace, o.DeliveryPollInterval) = (Grace, TimeSpan.FromMilliseconds(20));

    /// <summary>Enlisted effects of this (pipeline, step) throw once, inside whatever group they commit in.</summary>
    private (Guid PipelineId, string Step)? _failOnce;

    /// <summary>
    /// Pipeline <c>fan</c>: root, then four branches at once, then join; every step enlists one
    /// <c>side_effects</c> row. Pipeline <c>slow</c>: one step that takes <paramref name="slowStep"/>.
    /// </summary>
    private async Task<StoreHost> Start(BusFlowStoreOptions options, int concurrency = 32, TimeSpan? slowStep = null)
    {
        var host = await StoreHost.Start(options, b => b
            .AddWorker("w", async ctx =>
            {
                Interlocked.Increment(ref _runs);
                var now = Interlocked.Increment(ref _running);
                for (var most = Volatile.Read(ref _mostAtOnce); now > most; most = Volatile.Read(ref _mostAtOnce))
                {
                    Interlocked.CompareExchange(ref _mostAtOnce, now, most);
                }

                try
                {
                    await Task.Delay(ctx.StepName == "slow" ? slowStep ?? TimeSpan.Zero : TimeSpan.FromMilliseconds(20), ctx.CancellationToken);
                }
                finally
                {
                    Interlocked.Decrement(ref _running);
                }

                ctx.Enlist(async commit =>
                {
                    if (_failOnce is { } fail && fail.PipelineId == ctx.PipelineId && fail.Step == ctx.StepName)
                    {
                        _failOnce = null;
                        throw new TimeoutException("The effect's database did not answer in time (once).");
                    }

                    await using var insert = commit.Connection!.CreateCommand();
                    insert.Transaction = commit.Transaction;
                    insert.CommandText = $"INSERT INTO side_effects (pipeline_id, step) VALUES ('{ctx.PipelineId}', '{ctx.StepName}')";
                    await insert.ExecuteNonQueryAsync(commit.CancellationToken);
                });
                return StepResult.Success(new { ctx.StepName });
            }, concurrency)
            .AddPipeline("fan", p =>
            {
                p.Step("root", s => s.Worker("w"));
                for (var i = 0; i < 4; i++)
                {
                    p.Step($"b{i}", s => s.Worker("w").After("root"));
                }

                p.Step("join", s => s.Worker("w").After("b0", "b1", "b2", "b3"));
            })
            .AddPipeline("slow", p => p.Then("slow", s => s.Worker("w"))),
            consumers: bus =>
            {
                bus.AddConsumeObserver(_ => _commands);
                bus.AddConsumeObserver(_ => _reports);
            });
        await When_a_step_command_is_delivered_twice.Execute(host, "CREATE TABLE side_effects (pipeline_id VARCHAR(64) NOT NULL, step VARCHAR(64) NOT NULL)");
        return host;
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_run_it_without_the_broker_and_commit_its_outcome_inbox_mark_and_effects_with_the_next_transition(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        // Slots for every branch at once, so that all run beside the saga.
        await using var host = await Start(db.Options(), concurrency: 128);

        var ids = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => host.RunPipeline("fan")));

        Assert.Equal(0, _commands.Count);
        Assert.Equal(0, _reports.Count);
        Assert.Equal(60, Runs);
        await using var context = await host.Databases.CreateDbContextAsync();
        foreach (var id in ids)
        {
            var logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
            AssertGaplessSeq(logged);
            Assert.Equal(14, logged.Count);
            Assert.Equal(6, await context.Outbox.CountAsync(o => o.PipelineId == id && o.MessageType == typeof(ExecuteStep).FullName && o.DeliveredAt != null));
        }

        Assert.Equal(60, await context.Inbox.CountAsync(i => i.Consumer == "step:w"));
        Assert.Equal(60L, await When_a_step_command_is_delivered_twice.Scalar(host, "SELECT COUNT(*) FROM side_effects"));
        Assert.Equal(0, await context.Outbox.CountAsync(o => o.DeliveredAt == null));
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_send_every_command_through_the_broker_when_co_location_is_off(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await Start(db.Options(o => o.ColocateSteps = false));

        var id = await host.RunPipeline("fan");

        // The consume observers count a message after its consumer returned, which may be after the
        // pipeline's completion reached the test.
        for (var waited = 0; (_commands.Count < 6 || _reports.Count < 6) && waited < 100; waited++)
        {
            await Task.Delay(20);
        }

        Assert.Equal(6, _commands.Count);
        Assert.Equal(6, _reports.Count);
        AssertGaplessSeq(await host.Reader.ReadPipelineAsync(id, 0, 100));
        Assert.Equal(6L, await When_a_step_command_is_delivered_twice.Scalar(host, "SELECT COUNT(*) FROM side_effects"));
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_send_a_command_through_the_broker_when_its_worker_has_no_free_slot(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await Start(db.Options(), concurrency: 1);

        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => host.RunPipeline("fan")));

        // The fan's branches cannot all run beside the saga with one slot; the rest went by the
        // broker, and the worker queue's consumer shares the same slot.
        Assert.True(_commands.Count > 0, "Every command ran co-located although the worker has one slot.");
        // A report's consume observer runs after the saga consumed it, which may be after its
        // pipeline's completion reached this test.
        for (var waited = 0; _reports.Count != _commands.Count && waited < 100; waited++)
        {
            await Task.Delay(100);
        }

        Assert.Equal(_commands.Count, _reports.Count);
        Assert.Equal(1, Volatile.Read(ref _mostAtOnce));
        Assert.Equal(24, Runs);
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_keep_its_command_from_the_outbox_delivery_while_it_runs_past_the_grace_period(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await Start(db.Options(ShortGrace), slowStep: TimeSpan.FromSeconds(2));

        var id = await host.StartPipeline("slow");
        await host.Events.WaitFor<StepStarted>(id);
        await Task.Delay(TimeSpan.FromSeconds(1.2));
        // Renewed while it runs, so a deliverer in another process leaves it alone too.
        await using (var context = await host.Databases.CreateDbContextAsync())
        {
            var row = await context.Outbox.AsNoTracking().SingleAsync(o => o.PipelineId == id && o.MessageType == typeof(ExecuteStep).FullName);
            Assert.Null(row.DeliveredAt);
            Assert.True(DateTimeOffset.UtcNow - row.CreatedAt < Grace, $"The running step's command row is {(DateTimeOffset.UtcNow - row.CreatedAt).TotalMilliseconds:0} ms old: not renewed.");
        }

        Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id));
        await Task.Delay(Grace * 2);
        Assert.Equal(0, _commands.Count);
        Assert.Equal(1, Runs);
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_not_run_a_cancelled_attempt_again(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await Start(db.Options(ShortGrace), slowStep: TimeSpan.FromMinutes(5));

        var id = await host.StartPipeline("slow");
        await host.Events.WaitFor<StepStarted>(id);
        await host.Bus.Publish(new CancelPipeline { PipelineId = id, Reason = "spec" });

        Assert.IsType<PipelineCancelled>(await host.Events.WaitForEnd(id));
        for (var i = 0; i < 100 && Volatile.Read(ref _running) > 0; i++)
        {
            await Task.Delay(20);
        }

        await Task.Delay(Grace * 3);
        Assert.Equal(0, Volatile.Read(ref _running));
        Assert.Equal(0, _commands.Count);
        Assert.Equal(1, Runs);
        await using var context = await host.Databases.CreateDbContextAsync();
        Assert.Equal(0, await context.Outbox.CountAsync(o => o.DeliveredAt == null && o.MessageType == typeof(ExecuteStep).FullName));
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_commit_the_rest_of_a_group_and_retry_a_failing_outcome_alone(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        // Slots for every branch at once, so that all run beside the saga.
        await using var host = await Start(db.Options(), concurrency: 128);
        var ids = Enumerable.Range(0, 20).Select(_ => NewId.NextGuid()).ToList();
        _failOnce = (ids[7], "b2");

        await Task.WhenAll(ids.Select(id => host.Bus.Publish(new StartPipeline { PipelineId = id, Definition = "fan" })));

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await host.Events.WaitForEnd(id));
            AssertGaplessSeq(await host.Reader.ReadPipelineAsync(id, 0, 100));
        }

        Assert.Null(_failOnce);
        // Retried alone beside the saga, not left to the broker; every effect committed once.
        Assert.Equal(0, _commands.Count);
        Assert.Equal(120, Runs);
        Assert.Equal(120L, await When_a_step_command_is_delivered_twice.Scalar(host, "SELECT COUNT(*) FROM side_effects"));
        Assert.Equal(120L, await When_a_step_command_is_delivered_twice.Scalar(host, "SELECT COUNT(*) FROM (SELECT DISTINCT pipeline_id, step FROM side_effects) d"));
    }

    [SkippableTheory]
    [AllStores]
    public async Task Should_record_every_progress_report_in_order_before_the_outcome(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var progress = new ConsumedMessages<ReportStepProgress>();
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("ticker", async ctx =>
            {
                for (var i = 1; i <= 50; i++)
                {
                    await ctx.ReportProgressAsync(i * 2, $"tick {i}");
                }

                return StepResult.Success();
            })
            .AddPipeline("ticks", p => p.Then("ticker")),
            consumers: bus => bus.AddConsumeObserver(_ => progress));

        var ids = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => host.RunPipeline("ticks")));

        foreach (var id in ids)
        {
            var logged = await host.Reader.ReadPipelineAsync(id, 0, 100);
            AssertGaplessSeq(logged);
            // A step that ends right after its last report loses none of them to its own completion.
            Assert.Equal(Enumerable.Range(1, 50).Select(i => $"tick {i}"), logged.OfType<StepProgress>().Select(e => e.Message));
            Assert.Equal(["PipelineStarted", "StepStarted"], logged.Take(2).Select(e => e.EventType));
            Assert.Equal(["StepCompleted", "PipelineCompleted"], logged.TakeLast(2).Select(e => e.EventType));
        }

        // Folded into transitions beside the saga, not sent through the bus.
        Assert.Equal(0, progress.Count);
    }

    /// <summary>
    /// Positions follow row ids. When one group holds a wide outcome of a pipeline (b's completion
    /// starts ten map items: a multi-row insert) and a narrow one (c's completion), every event row
    /// must still be inserted in seq order, or a subscriber by position sees the pipeline out of order.
    /// </summary>
    [SkippableTheory]
    [AllStores]
    public async Task Should_give_each_pipelines_events_positions_in_seq_order_whatever_shares_a_group(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await using var host = await StoreHost.Start(db.Options(), b => b
            .AddWorker("quick", async ctx =>
            {
                await Task.Yield();
                return StepResult.Success(new { ctx.StepName });
            }, concurrency: 256)
            .AddPipeline("wide-and-narrow", p => p
                .Step("a", s => s.Worker("quick"))
                .Step("b", s => s.Worker("quick").After("a"))
                .Step("c", s => s.Worker("quick").After("a"))
                .Map("m", s => s.Worker("quick").Over("input.items").After("b"))
                .Step("d", s => s.Worker("quick").After("c", "m"))));

        var input = new { items = Enumerable.Range(1, 10).ToArray() };
        var ids = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => host.RunPipeline("wide-and-narrow", input)));

        foreach (var id in ids)
        {
            var logged = await host.Reader.ReadPipelineAsync(id, 0, 200);
            AssertGaplessSeq(logged);
            Assert.Equal(logged.Select(e => e.Seq), logged.OrderBy(e => e.Position).Select(e => e.Seq));
        }
    }
}
