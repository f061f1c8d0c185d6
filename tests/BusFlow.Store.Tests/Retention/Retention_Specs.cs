using BusFlow.Contracts;
using BusFlow.Store.Internal;
using BusFlow.Store.Tests.Support;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow.Store.Tests;

public sealed class When_retention_runs
{
    [SkippableTheory]
    [AllStores]
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
        var keys = host.Services.GetRequiredService<IIdempotencyKeys>();
        await keys.ClaimAsync("start", "done-key", "hash", done);
        await keys.ClaimAsync("start", "running-key", "hash", running);

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

        Assert.Null(await keys.FindAsync("start", "done-key"));
        Assert.NotNull(await keys.FindAsync("start", "running-key"));
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
