using BusFlow.Edge.Tests.Support;
using BusFlow.Store;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Edge.Tests;

/// <summary>
/// An edge in the saga's process takes events from the store as they commit
/// (<see cref="EdgeOptions.TakeCommittedEventsInProcess"/>), not only from the bus.
/// </summary>
public sealed class When_the_edge_runs_beside_the_store_that_commits_the_events
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_relay_them_live_in_order_while_nothing_goes_out_on_the_bus(StoreProviderKind provider)
    {
        // Another process holds the outbox lease for the whole test, so this host's delivery never
        // publishes an event: whatever reaches the subscriber came from the commits in this process.
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var taken = await context.Leases.Where(l => l.Name == "outbox")
                .ExecuteUpdateAsync(s => s.SetProperty(l => l.Owner, "another process").SetProperty(l => l.ExpiresAt, DateTimeOffset.UtcNow.AddHours(1)));
            Assert.Equal(1, taken);
        }

        await using var server = await EdgeServer.StartAsync(database: db);
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri());
        await ws.SubscribeAsync("*");
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add(await server.Http.StartAsync("ticker", new { ticks = 3, delayMs = 0 }));
        }

        var finished = new HashSet<Guid>();
        var events = await ws.ReceiveUntilAsync(e => e.IsTerminal() && finished.Add(e.PipelineId()) && finished.Count == ids.Count);

        // Gapless and in position order across pipelines, and each pipeline's seqs from 1 without a hole.
        var positions = events.Select(e => e.Position()).ToList();
        Assert.Equal(Enumerable.Range((int)positions[0], positions.Count).Select(p => (long)p), positions);
        foreach (var id in ids)
        {
            var seqs = events.Where(e => e.PipelineId() == id).Select(e => e.Seq()).ToList();
            Assert.Equal(Enumerable.Range(1, seqs.Count).Select(s => (long)s), seqs);
            Assert.Equal("PipelineCompleted", events.Last(e => e.PipelineId() == id).Type());
        }

        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var lease = await context.Leases.SingleAsync(l => l.Name == "outbox");
            Assert.Equal("another process", lease.Owner);
            Assert.Equal(0, lease.DeliveredUpTo);
        }
    }
}

/// <summary>
/// Events the bus never brings to the edge, with nothing after them to reveal the gap (the edge's
/// temporary queue was lost with a broker node, say): the live feed's tail check reads them from
/// the store (<see cref="EdgeOptions.TailCheck"/>).
/// </summary>
public sealed class When_the_bus_never_brings_the_last_events
{
    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    public async Task Should_relay_them_from_the_store_once_the_feed_has_been_idle(StoreProviderKind provider)
    {
        // The outbox lease is another process's and the edge does not take this process's commits:
        // no event reaches the live feed but by the store.
        await using var db = await TestDatabase.Create(provider);
        await db.MigrateAsync();
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var taken = await context.Leases.Where(l => l.Name == "outbox")
                .ExecuteUpdateAsync(s => s.SetProperty(l => l.Owner, "another process").SetProperty(l => l.ExpiresAt, DateTimeOffset.UtcNow.AddHours(1)));
            Assert.Equal(1, taken);
        }

        await using var server = await EdgeServer.StartAsync(
            edge: o =>
            {
                o.TakeCommittedEventsInProcess = false;
                o.TailCheck = TimeSpan.FromMilliseconds(300);
            },
            database: db);
        await using var ws = await WsClient.ConnectAsync(server.WebSocketUri());
        await ws.SubscribeAsync("*");
        var id = await server.Http.StartAsync("ticker", new { ticks = 2, delayMs = 0 });

        var events = await ws.ReceiveUntilAsync(e => e.IsTerminal() && e.PipelineId() == id);

        Assert.Equal(Enumerable.Range(1, events.Count).Select(s => (long)s), events.Select(e => e.Seq()));
        Assert.Equal("PipelineCompleted", events[^1].Type());
        await using (var context = new BusFlowDbContext(db.ContextOptions()))
        {
            var lease = await context.Leases.SingleAsync(l => l.Name == "outbox");
            Assert.Equal(("another process", 0L), (lease.Owner, lease.DeliveredUpTo));
        }
    }
}
