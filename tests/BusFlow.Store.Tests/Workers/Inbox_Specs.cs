using System.Data.Common;
using BusFlow.Contracts;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

public sealed class When_a_step_command_is_delivered_twice
{
    private int _runs;

    private int Runs => Volatile.Read(ref _runs);

    [SkippableTheory]
    [AllStores]
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

    [SkippableTheory]
    [AllStores]
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
    [SkippableTheory]
    [AllStores(true)]
    [AllStores(false)]
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

public sealed class When_the_in_memory_transport_restarts_with_a_step_in_flight
{
    [SkippableTheory]
    [AllStores]
    public async Task Should_send_the_lost_step_command_again_and_finish(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        var events = new BusFlow.Testing.RecordedEvents();
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
