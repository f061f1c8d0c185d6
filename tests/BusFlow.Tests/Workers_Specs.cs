using System.Collections.Concurrent;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Tests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Tests;

public sealed record ResizeImage(string Url, int Width);

public sealed record ImageResized(string Url, int Width, string ResizedUrl);

/// <summary>An ordinary MassTransit consumer, written without BusFlow in mind.</summary>
public sealed class ResizeImageConsumer : IConsumer<ResizeImage>
{
    public Task Consume(ConsumeContext<ResizeImage> context) =>
        context.Message.Width <= 0
            ? throw new ArgumentOutOfRangeException(nameof(context), "width must be positive")
            : context.RespondAsync(new ImageResized(context.Message.Url, context.Message.Width, $"{context.Message.Url}?w={context.Message.Width}"));
}

public sealed class When_an_existing_consumer_is_a_step
{
    private static Task<BusFlowHarness> Start() => BusFlowHarness.Start(
        b => b
            .AddRequestWorker<ResizeImage, ImageResized>(
                "resize",
                ctx => new ResizeImage(ctx.GetPipelineInput<JsonElement>().GetProperty("url").GetString()!, ctx.GetPipelineInput<JsonElement>().GetProperty("width").GetInt32()),
                r => new { r.ResizedUrl })
            .AddPipeline("thumbnail", p => p.Then("resize")),
        bus => bus.AddConsumer<ResizeImageConsumer>());

    [Fact]
    public async Task Should_send_the_request_and_use_the_response_as_the_output()
    {
        await using var bf = await Start();

        var id = await bf.StartPipeline("thumbnail", new { url = "http://img/1.png", width = 64 });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        Assert.Equal("http://img/1.png?w=64", end.Outputs["resize"].GetProperty("resizedUrl").GetString());
        Assert.True(await bf.Harness.Consumed.Any<ResizeImage>());
    }

    [Fact]
    public async Task Should_fail_the_step_when_the_consumer_faults()
    {
        await using var bf = await Start();

        var id = await bf.StartPipeline("thumbnail", new { url = "http://img/1.png", width = 0 });
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));

        Assert.Equal("resize", end.FailedStep);
        Assert.Contains("width must be positive", end.Error.Message, StringComparison.Ordinal);
    }
}

public sealed class When_a_worker_reports_progress_and_streams
{
    [Fact]
    public async Task Should_record_each_report_as_a_step_progress_event_in_order()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("writer", async ctx =>
            {
                await ctx.ReportProgressAsync(10, "starting");
                foreach (var word in new[] { "hello", "streaming", "world" })
                {
                    await ctx.StreamAsync(new { token = word });
                }

                await ctx.ReportProgressAsync(100, "done");
                return StepResult.Success("hello streaming world");
            })
            .AddPipeline("stream", p => p.Then("writer")));

        var id = await bf.StartPipeline("stream");
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        var progress = bf.Events.For(id).OfType<StepProgress>().OrderBy(e => e.Seq).ToList();
        Assert.Equal(5, progress.Count);
        Assert.Equal("starting", progress[0].Message);
        Assert.Equal(["hello", "streaming", "world"], progress.Skip(1).Take(3).Select(p => p.Chunk!.Value.GetProperty("token").GetString()));
        Assert.Equal(100, progress[4].Percent);
        var completedSeq = bf.Events.For(id).OfType<StepCompleted>().Single().Seq;
        Assert.All(progress, p => Assert.True(p.Seq < completedSeq));
    }
}

public sealed class When_a_start_is_odd
{
    [Fact]
    public async Task Should_fail_a_pipeline_naming_an_unknown_definition_clearly_once_no_process_took_it_within_the_wait()
    {
        await using var bf = await BusFlowHarness.Start(b =>
        {
            b.AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
                .AddPipeline("known", p => p.Then("w"));
            b.DefinitionWait = TimeSpan.FromSeconds(1.5);
        });

        var started = DateTimeOffset.UtcNow;
        var id = await bf.StartPipeline("nope");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));

        // Left on the queue for a process of a newer release that might have it, then failed.
        Assert.True(end.Timestamp - started >= TimeSpan.FromSeconds(1.5), $"failed after {end.Timestamp - started}");
        Assert.Equal("unknown_definition", end.Error.Kind);
        Assert.Contains("'nope'", end.Error.Message, StringComparison.Ordinal);
        Assert.Equal(1, end.Seq);
    }

    [Fact]
    public async Task Should_start_one_pipeline_when_the_same_start_arrives_twice()
    {
        var runs = 0;
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("w", ctx =>
            {
                Interlocked.Increment(ref runs);
                return Task.FromResult(StepResult.Success());
            })
            .AddPipeline("once", p => p.Then("w")));

        var start = new StartPipeline { PipelineId = NewId.NextGuid(), Definition = "once" };
        await bf.Harness.Bus.Publish(start);
        await bf.Harness.Bus.Publish(start);
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(start.PipelineId));
        Assert.True(await bf.Harness.Consumed.Any<StartPipeline>(x => x.Context.Message.PipelineId == start.PipelineId));
        await Task.Delay(200);

        Assert.Equal(1, runs);
        Assert.Single(bf.Events.For(start.PipelineId).OfType<PipelineStarted>());
        AssertGaplessSeq(bf.Events.For(start.PipelineId));
    }
}

public sealed class When_an_observer_is_registered
{
    private sealed class Collector : PipelineObserver
    {
        public ConcurrentQueue<PipelineEvent> Seen { get; } = new();

        protected override ValueTask OnStepCompleted(StepCompleted e, CancellationToken cancellationToken)
        {
            Seen.Enqueue(e);
            return ValueTask.CompletedTask;
        }

        protected override ValueTask OnPipelineCompleted(PipelineCompleted e, CancellationToken cancellationToken)
        {
            Seen.Enqueue(e);
            return ValueTask.CompletedTask;
        }
    }

    private sealed class Broken : IPipelineObserver
    {
        public ValueTask OnEventAsync(PipelineEvent pipelineEvent, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("observer bug");
    }

    [Fact]
    public async Task Should_see_every_event_in_process_and_survive_a_throwing_observer()
    {
        await using var bf = await BusFlowHarness.Start(b =>
        {
            b.AddWorker("w", ctx => Task.FromResult(StepResult.Success()))
                .AddPipeline("observed", p => p.Then("a", s => s.Worker("w")).Then("b", s => s.Worker("w")))
                .AddObserver<Broken>()
                .AddObserver<Collector>();
        });

        var id = await bf.StartPipeline("observed");
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        var collector = bf.Services.GetServices<IPipelineObserver>().OfType<Collector>().Single();
        Assert.Equal(["StepCompleted", "StepCompleted", "PipelineCompleted"], collector.Seen.Select(e => e.EventType));
        Assert.Equal(bf.Events.For(id).Where(e => e is StepCompleted or PipelineCompleted).Select(e => e.Seq).Order(), collector.Seen.Select(e => e.Seq));
    }
}

public sealed class When_many_wide_pipelines_run_at_once
{
    [Fact]
    public async Task Should_record_every_event_with_gapless_seq_for_each()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("w", async ctx =>
            {
                await Task.Yield();
                return StepResult.Success(ctx.StepName);
            }, concurrency: 64)
            .AddPipeline("wide", p =>
            {
                p.Step("root", s => s.Worker("w"));
                for (var i = 0; i < 8; i++)
                {
                    var name = $"branch{i}";
                    p.Step(name, s => s.Worker("w").After("root"));
                }

                p.Step("join", s => s.Worker("w").After([.. Enumerable.Range(0, 8).Select(i => $"branch{i}")]));
            }));

        var ids = new List<Guid>();
        for (var i = 0; i < 50; i++)
        {
            ids.Add(await bf.StartPipeline("wide"));
        }

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id, TimeSpan.FromSeconds(60)));
        }

        foreach (var id in ids)
        {
            var events = bf.Events.For(id);
            AssertGaplessSeq(events);

            // PipelineStarted, 10 x (StepStarted + StepCompleted), PipelineCompleted.
            Assert.Equal(22, events.Count);
        }
    }
}
