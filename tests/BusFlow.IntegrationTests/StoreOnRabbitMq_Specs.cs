using System.Collections.Concurrent;
using System.Diagnostics;
using BusFlow.Contracts;
using BusFlow.IntegrationTests.Support;
using BusFlow.Store;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.IntegrationTests;

[Collection(RabbitMqCollection.Name)]
public sealed class When_RabbitMQ_restarts_while_pipelines_run(ITestOutputHelper output)
{
    // Long enough (6 x 3 s) that the broker is stopped mid-run even on a loaded 2-core machine.
    private static readonly string[] Steps = ["one", "two", "three", "four", "five", "six"];

    // PipelineStarted, StepStarted + StepCompleted per step, PipelineCompleted.
    private static readonly int EventsPerPipeline = 2 + (2 * Steps.Length);

    [ServerFact]
    public async Task Should_pause_resume_by_itself_and_lose_or_double_nothing()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var events = new RecordedEvents();
        var effects = new ConcurrentDictionary<(Guid, string, int), int>();
        using var host = await StoreOnRabbitMqHost.Start(vhost, db, b => b
            .AddWorker("tick", async ctx =>
            {
                await Task.Delay(3000, ctx.CancellationToken);
                ctx.Enlist(_ =>
                {
                    effects.AddOrUpdate((ctx.PipelineId, ctx.StepName, ctx.Attempt), 1, (_, n) => n + 1);
                    return Task.CompletedTask;
                });
                return StepResult.Success(ctx.StepName);
            })
            .AddPipeline("ticks", p =>
            {
                foreach (var step in Steps)
                {
                    p.Then(step, s => s.Worker("tick"));
                }
            }), events);

        var ids = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            ids.Add(await host.StartPipeline("ticks"));
        }

        var total = ids.Count * EventsPerPipeline;

        await events.WaitFor<StepStarted>(ids[^1], timeout: TimeSpan.FromSeconds(30));
        int beforeStop;
        try
        {
            await RabbitMqCtl("stop_app");
            beforeStop = events.All().Count;
            output.WriteLine($"broker stopped with {beforeStop} of {total} events received");
            await Task.Delay(TimeSpan.FromSeconds(3));
        }
        finally
        {
            await RabbitMqCtl("start_app");
        }

        output.WriteLine("broker started again");
        Assert.True(beforeStop < total, "the broker must go away while work is still to do");

        foreach (var id in ids)
        {
            try
            {
                Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromMinutes(2)));
            }
            catch (TimeoutException)
            {
                await StoreSnapshot.WriteAsync(host.Services, id, output);
                throw;
            }
        }

        var reader = host.Services.GetRequiredService<PipelineEventReader>();
        foreach (var id in ids)
        {
            var logged = await reader.ReadPipelineAsync(id, 0, 1000);
            AssertGaplessSeq(logged);
            Assert.Equal(EventsPerPipeline, logged.Count);
            Assert.All(logged, e => Assert.Contains(events.For(id), r => r.Seq == e.Seq));
            Assert.Equal(logged.Select(e => e.Seq), events.For(id).Select(e => e.Seq).Distinct().Order());
        }

        Assert.Equal(ids.Count * Steps.Length, effects.Count);
        Assert.All(effects.Values, n => Assert.Equal(1, n));
    }

    private static async Task RabbitMqCtl(string command)
    {
        var ctl = Environment.GetEnvironmentVariable("BUSFLOW_RABBITMQCTL")
            ?? throw new InvalidOperationException("BUSFLOW_RABBITMQCTL is not set: run the tests through tests/run.sh, which starts the broker this test restarts.");
        using var process = Process.Start(new ProcessStartInfo(ctl, [command]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"rabbitmqctl {command} failed: {await process.StandardError.ReadToEndAsync()}");
    }
}

[Collection(RabbitMqCollection.Name)]
public sealed class When_two_saga_processes_share_one_store
{
    [ServerFact]
    public async Task Should_never_lose_an_update_when_parallel_results_race()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var events = new RecordedEvents();
        static void Fanout(BusFlowBuilder b) => b
            .AddWorker("leaf", ctx => Task.FromResult(StepResult.Success(ctx.StepName)), concurrency: 64)
            .AddPipeline("fanout", p =>
            {
                p.Step("root", s => s.Worker("leaf"));
                var branches = Enumerable.Range(0, 20).Select(i => $"branch{i}").ToArray();
                foreach (var branch in branches)
                {
                    p.Step(branch, s => s.Worker("leaf").After("root"));
                }

                p.Step("join", s => s.Worker("leaf").Consumes(branches));
            });

        using var first = await StoreOnRabbitMqHost.Start(vhost, db, Fanout, events);
        using var second = await StoreOnRabbitMqHost.Start(vhost, db, Fanout);
        var ids = new List<Guid>();
        for (var i = 0; i < 15; i++)
        {
            ids.Add(await (i % 2 == 0 ? first : second).StartPipeline("fanout"));
        }

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromMinutes(2)));
        }

        var reader = first.Services.GetRequiredService<PipelineEventReader>();
        foreach (var id in ids)
        {
            var logged = await reader.ReadPipelineAsync(id, 0, 1000);
            AssertGaplessSeq(logged);

            // PipelineStarted, 22 steps x (StepStarted + StepCompleted), PipelineCompleted: every result applied once.
            Assert.Equal(46, logged.Count);
            Assert.Equal(22, logged.OfType<StepCompleted>().Select(e => e.StepName).Distinct().Count());
            var join = logged.OfType<StepStarted>().Single(e => e.StepName == "join").Seq;
            Assert.All(logged.OfType<StepCompleted>().Where(e => e.StepName.StartsWith("branch", StringComparison.Ordinal)), e => Assert.True(e.Seq < join));
        }
    }
}

[Collection(RabbitMqCollection.Name)]
public sealed class When_a_service_consumes_single_events_while_the_store_publishes_batches
{
    [ServerFact]
    public async Task Should_receive_each_once_in_order_with_its_own_message_id()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();

        // A service with MassTransit and a consumer of StepCompleted only, no BusFlow roles.
        var received = new ConcurrentQueue<(Guid PipelineId, long Seq, Guid? MessageId)>();
        var subscriber = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        subscriber.Logging.SetMinimumLevel(LogLevel.Error);
        subscriber.Services.AddSingleton(received);
        subscriber.Services.AddMassTransit(x =>
        {
            // One message at a time: a consumer that takes several at once sees them in any order (docs/integration.md).
            x.AddConsumer<StepCompletedSubscriber>().Endpoint(e => e.ConcurrentMessageLimit = 1);
            x.UsingRabbitMq((context, cfg) =>
            {
                var broker = TestServers.RabbitMq;
                cfg.Host(broker.Host, (ushort)broker.Port, vhost.Name, h =>
                {
                    h.Username(Uri.UnescapeDataString(broker.UserInfo.Split(':')[0]));
                    h.Password(Uri.UnescapeDataString(broker.UserInfo.Split(':')[1]));
                });
                cfg.SplitPipelineEventBatches();
                cfg.ConfigureEndpoints(context);
            });
        });
        using var service = subscriber.Build();
        await service.StartAsync();

        var events = new RecordedEvents();
        using var host = await StoreOnRabbitMqHost.Start(vhost, db, b => b
            .AddWorker("w", ctx => Task.FromResult(StepResult.Success(ctx.StepName)), concurrency: 8)
            .AddPipeline("three", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w")).Then("c", s => s.Worker("w"))),
            events,
            store: o => o.EventPublishing = EventPublishMode.Batched);
        var ids = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            ids.Add(await host.StartPipeline("three"));
        }

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await events.WaitForEnd(id, TimeSpan.FromMinutes(1)));
        }

        var reader = host.Services.GetRequiredService<PipelineEventReader>();
        var expected = new List<(Guid, long, Guid?)>();
        foreach (var id in ids)
        {
            expected.AddRange((await reader.ReadPipelineAsync(id, 0, 100)).OfType<StepCompleted>().Select(e => (e.PipelineId, e.Seq, (Guid?)PipelineEventMessageIds.For(e.PipelineId, e.Seq))));
        }

        for (var i = 0; i < 500 && received.Count < expected.Count; i++)
        {
            await Task.Delay(10);
        }

        // Once each (none doubled by a single message beside its batch), in seq order per pipeline.
        Assert.Equal(expected.Order(), received.Order());
        foreach (var pipeline in received.GroupBy(e => e.PipelineId))
        {
            Assert.Equal(pipeline.Select(e => e.Seq).Order(), pipeline.Select(e => e.Seq));
        }

        await service.StopAsync();
    }

    public sealed class StepCompletedSubscriber(ConcurrentQueue<(Guid PipelineId, long Seq, Guid? MessageId)> received) : IConsumer<StepCompleted>
    {
        public Task Consume(ConsumeContext<StepCompleted> context)
        {
            received.Enqueue((context.Message.PipelineId, context.Message.Seq, context.MessageId));
            return Task.CompletedTask;
        }
    }
}
