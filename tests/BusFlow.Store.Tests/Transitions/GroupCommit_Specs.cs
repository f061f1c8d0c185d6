using System.Data.Common;
using BusFlow.Contracts;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Store.Tests;

public sealed class When_a_group_writes_its_rows_without_SaveChanges
{
    [SkippableTheory]
    [AllStores]
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
            await GroupRows.WriteAsync(context, transaction.GetDbTransaction(), BusFlow.Store.Dialects.StoreDialect.For(provider), CancellationToken.None);
            Assert.All(context.ChangeTracker.Entries().Where(e => e.State != EntityState.Unchanged), e => Assert.IsType<SuspensionRecord>(e.Entity));
            await context.SaveChangesAsync();
            await transaction.CommitAsync();
        }
    }
}

public sealed class When_the_answer_to_a_group_commit_is_lost
{
    [SkippableTheory]
    [AllStores]
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
