using System.Text.Json;

namespace BusFlow.Edge.Tests.Support;

/// <summary>
/// <c>ticker</c>: one step that reports <c>ticks</c> progress events (<c>delayMs</c> apart) and
/// succeeds; a long stream of events for the relay tests. <c>hold</c>: waits until cancelled.
/// <c>parent</c>: runs <c>ticker</c> as a child pipeline with the parent's input.
/// </summary>
public static class TestPipelines
{
    public sealed record TickerInput(int Ticks, int DelayMs, string? Padding);

    public static void Register(BusFlowBuilder busflow) => busflow
        .AddWorker("ticker", async ctx =>
        {
            var input = ctx.GetPipelineInput<TickerInput>()!;
            for (var i = 1; i <= input.Ticks; i++)
            {
                await ctx.ReportProgressAsync(100.0 * i / input.Ticks, input.Padding ?? $"tick {i}");
                if (input.DelayMs > 0)
                {
                    await Task.Delay(input.DelayMs, ctx.CancellationToken);
                }
            }

            return StepResult.Success(new { ticks = input.Ticks });
        })
        .AddWorker("hold", async ctx =>
        {
            await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
            return StepResult.Success(JsonDocument.Parse("{}").RootElement);
        })
        .AddPipeline("ticker", p => p.Step("tick", s => s.Worker("ticker")))
        .AddPipeline("hold", p => p.Step("hold", s => s.Worker("hold")))
        .AddPipeline("parent", p => p.Child("child", "ticker"));
}
