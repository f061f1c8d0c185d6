using System.Collections.Concurrent;
using BusFlow.Contracts;
using BusFlow.Store.Dialects;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

public sealed class When_events_are_published_in_batches
{
    [SkippableTheory]
    [AllStores]
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

public sealed class When_a_deliverer_lost_its_lease_while_stalled
{
    [SkippableTheory]
    [AllStores]
    public async Task Should_give_no_positions_after_those_of_the_deliverer_that_took_over(StoreProviderKind provider)
    {
        Skip.If(StoreDialect.For(provider).PositionEventsSql is null, $"{provider} stores hold no rows without a position: nothing to position");
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
            var rows = await StoreDialect.For(provider).PositionEventsAsync(
                context.Database.GetDbConnection(), transaction.GetDbTransaction(), OutboxDelivery.LeaseName, owner, now, 100, CancellationToken.None);
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
