using System.Collections.Concurrent;
using MassTransit;

namespace BusFlow.IntegrationTests.Support;

/// <summary>What the test workers saw: cancellations that reached them, by step name.</summary>
public sealed class TestWorkerProbe
{
    public ConcurrentQueue<string> Cancelled { get; } = new();
}

/// <summary>Pipelines the RabbitMQ scenarios run besides the shipped samples.</summary>
public static class TestPipelines
{
    public sealed record LookUpPrice(string Sku);

    public sealed record PriceFound(string Sku, decimal Price);

    /// <summary>An ordinary MassTransit consumer answering a request, as existing systems have.</summary>
    public sealed class LookUpPriceConsumer : IConsumer<LookUpPrice>
    {
        public Task Consume(ConsumeContext<LookUpPrice> context) => context.RespondAsync(new PriceFound(context.Message.Sku, 9.5m));
    }

    public static void Register(BusFlowBuilder b, TestWorkerProbe probe)
    {
        b.AddWorker("t-echo", ctx => Task.FromResult(StepResult.Success(new { step = ctx.StepName })), concurrency: 64)
            .AddWorker("t-fail", ctx => Task.FromResult(StepResult.Fail($"{ctx.StepName} broke", retryable: false)))
            .AddWorker("t-wait", async ctx =>
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(ctx.Attempt == 1 ? 30 : 0), ctx.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    probe.Cancelled.Enqueue(ctx.StepName);
                    throw;
                }

                return StepResult.Success(ctx.StepName);
            })
            .AddWorker("t-slow", async ctx =>
            {
                try
                {
                    await Task.Delay(500, ctx.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    probe.Cancelled.Enqueue(ctx.StepName);
                    throw;
                }

                return StepResult.Success(ctx.StepName);
            })
            .AddWorker("t-suspend", ctx => Task.FromResult(ctx.Resume is null ? StepResult.Suspend("answer me", timeout: TimeSpan.FromMilliseconds(400)) : StepResult.Success()))
            .AddRequestWorker<LookUpPrice, PriceFound>("t-price", ctx => new LookUpPrice("sku-1"))
            .AddPipeline("t-child-parent", p => p
                .Step("before", s => s.Worker("t-echo"))
                .Child("sub", "wordcount", s => s.After("before"))
                .Step("after", s => s.Worker("t-echo").Consumes("sub")))
            .AddPipeline("t-timeout", p => p.Then("wait", s => s.Worker("t-wait").Timeout(TimeSpan.FromMilliseconds(500)).Retry(2, TimeSpan.FromMilliseconds(50))))
            .AddPipeline("t-cancel", p => p.Then("hang", s => s.Worker("t-wait").Timeout(TimeSpan.FromMinutes(5))).Then("never", s => s.Worker("t-echo")))
            .AddPipeline("t-expire", p => p.Then("ask", s => s.Worker("t-suspend")))
            .AddPipeline("t-price", p => p.Then("price", s => s.Worker("t-price")))
            .AddPipeline("t-failfast", p => Branches(p, FailurePolicy.FailPipeline))
            .AddPipeline("t-continue", p => Branches(p, FailurePolicy.ContinueIndependent))
            .AddPipeline("t-wide", p =>
            {
                p.Step("root", s => s.Worker("t-echo"));
                var branches = Enumerable.Range(0, 10).Select(i => $"branch{i}").ToArray();
                foreach (var branch in branches)
                {
                    p.Step(branch, s => s.Worker("t-echo").After("root"));
                }

                p.Step("join", s => s.Worker("t-echo").After(branches));
            });
    }

    private static void Branches(PipelineBuilder p, FailurePolicy policy) => p
        .Step("a", s => s.Worker("t-echo"))
        .Step("b", s => s.Worker("t-fail").After("a").OnFailure(policy))
        .Step("c", s => s.Worker("t-slow").After("a"))
        .Step("d", s => s.Worker("t-echo").After("b"))
        .Step("e", s => s.Worker("t-echo").After("c"));
}
