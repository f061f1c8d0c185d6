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

public sealed class When_two_transactions_write_events_at_once
{
    [SkippableTheory]
    [AllStores]
    public async Task Should_give_the_later_commit_the_later_positions(StoreProviderKind provider)
    {
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        var options = db.ContextOptions();
        await using var first = new BusFlowDbContext(options);
        var (a, b) = (NewId.NextGuid(), NewId.NextGuid());

        await first.Database.OpenConnectionAsync();
        await using var firstTransaction = await first.Database.BeginTransactionAsync();
        await StoreDialect.For(provider).InsertEventsAsync(first.Database.GetDbConnection(), firstTransaction.GetDbTransaction(), [Row(a, 1), Row(a, 2)], CancellationToken.None);

        var second = Task.Run(async () =>
        {
            await using var context = new BusFlowDbContext(options);
            await context.Database.OpenConnectionAsync();
            await using var transaction = await context.Database.BeginTransactionAsync();
            await StoreDialect.For(provider).InsertEventsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), [Row(b, 1)], CancellationToken.None);
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

/// <summary>
/// The position counter is a row of its own (<see cref="OutboxDelivery.PositionCounter"/>), apart
/// from the outbox lease's row, so the delivery's marks do not wait for commits holding the counter.
/// </summary>
public sealed class When_the_position_counter_moves_to_its_own_row
{
    [SkippableTheory]
    [AllStores]
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

public sealed class When_a_transition_decides_many_events_at_once
{
    [SkippableTheory]
    [AllStores]
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
