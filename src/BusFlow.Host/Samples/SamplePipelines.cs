using System.Text.Json;

namespace BusFlow.Host.Samples;

/// <summary>The pipelines and workers shipped with the host, used by the README's tour, tests and docs.</summary>
public static class SamplePipelines
{
    /// <summary>The sample workers' names.</summary>
    public static readonly string[] Workers = ["demo-step", "count-words", "sum-counts", "approval-step", "ledger-entry", SampleRelease.Worker];

    /// <summary>
    /// Registers the sample pipelines, and their workers when <paramref name="runWorkers"/> is set;
    /// otherwise the workers are expected in other processes (the <c>worker</c> role).
    /// <paramref name="releaseVersions"/>: the versions of <c>release</c> to register (<see cref="SampleRelease"/>).
    /// </summary>
    public static void Register(BusFlowBuilder busflow, bool runWorkers = true, IReadOnlyCollection<string>? releaseVersions = null)
    {
        if (runWorkers)
        {
            busflow
                .AddWorker<DemoStepHandler>("demo-step")
                .AddWorker("count-words", CountWords)
                .AddWorker("sum-counts", SumCounts)
                .AddWorker("approval-step", Approval)
                .AddWorker("ledger-entry", SampleLedger.Entry)
                .AddWorker(SampleRelease.Worker, SampleRelease.Step);
            // Before the bus, right after the store's own start (which says clearly when the
            // database cannot be reached): a start that fails here consumes nothing.
            var storeStart = busflow.Services.ToList().FindIndex(d => d.ServiceType == typeof(IHostedService) && d.ImplementationType?.Assembly == typeof(BusFlow.Store.BusFlowDbContext).Assembly);
            busflow.Services.Insert(storeStart + 1, ServiceDescriptor.Singleton<IHostedService, SampleLedgerTable>());
        }
        else
        {
            foreach (var worker in Workers)
            {
                busflow.AddRemoteWorker(worker);
            }
        }

        busflow
            .AddPipeline("demo", Demo)
            .AddPipeline("wordcount", p => p
                .Input(i => i.Required("texts", InputKind.Array))
                .Map("count", s => s.Worker("count-words").Over("input.texts").MaxParallelism(4))
                .Step("reduce", s => s.Worker("sum-counts").Consumes("count")))
            .AddPipeline("approval", p => p
                .Then("draft", s => s.Worker("approval-step"))
                .Then("approve", s => s.Worker("approval-step").SuspensionTimeout(TimeSpan.FromHours(1)))
                .Then("publish", s => s.Worker("approval-step")))
            .AddPipeline("ledger", p => p
                .Input(i => i.Optional("amount", InputKind.Number))
                .Then("debit", s => s.Worker("ledger-entry"))
                .Then("credit", s => s.Worker("ledger-entry")));
        SampleRelease.Register(busflow, releaseVersions ?? ["1", "2"]);
    }

    /// <summary>The versions of <c>release</c> that <c>Samples:ReleaseVersions</c> names (<c>1,2</c> when unset).</summary>
    public static string[] ReleaseVersions(Microsoft.Extensions.Configuration.IConfiguration configuration) =>
        configuration[SampleRelease.Setting] is { Length: > 0 } text ? text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : ["1", "2"];

    /// <summary>The <c>demo</c> DAG (fetch -> clean, enrich -> merge -> report), every step on the <c>demo-step</c> worker (<see cref="DemoStepHandler"/>).</summary>
    public static void Demo(PipelineBuilder p) => p
        .Input(i => i
            .Optional("delayMs", InputKind.Number)
            .Optional("progressTicks", InputKind.Number)
            .Optional("failStep", InputKind.String | InputKind.Null)
            .Optional("flakyStep", InputKind.String | InputKind.Null))
        .Step("fetch", s => s.Worker("demo-step"))
        .Step("clean", s => s.Worker("demo-step").After("fetch"))
        .Step("enrich", s => s.Worker("demo-step").After("fetch"))
        .Step("merge", s => s.Worker("demo-step").Consumes("clean", "enrich"))
        .Step("report", s => s.Worker("demo-step").Consumes("merge"))
        .DefaultRetry(maxAttempts: 2, initialDelay: TimeSpan.FromMilliseconds(100));

    private static Task<StepResult> CountWords(StepContext context)
    {
        var text = context.GetItem<string>() ?? "";
        var counts = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .GroupBy(w => w.ToLowerInvariant(), StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        return Task.FromResult(StepResult.Success(counts));
    }

    private static Task<StepResult> SumCounts(StepContext context)
    {
        var total = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var counts in context.GetInput<List<Dictionary<string, int>>>("count") ?? [])
        {
            foreach (var (word, n) in counts)
            {
                total[word] = total.GetValueOrDefault(word) + n;
            }
        }

        return Task.FromResult(StepResult.Success(total));
    }

    private static Task<StepResult> Approval(StepContext context) => Task.FromResult(context.StepName switch
    {
        "draft" => StepResult.Success(new { text = "Draft of " + (context.GetPipelineInput<JsonElement?>()?.ToString() ?? "nothing") }),
        "approve" when context.Resume is null => StepResult.Suspend("Approve the draft?", new { question = "approve?" }),
        "approve" => context.GetResume<ApprovalAnswer>() is { Approved: true }
            ? StepResult.Success(new { approved = true })
            : StepResult.Fail("The draft was rejected.", retryable: false, kind: "rejected"),
        _ => StepResult.Success(new { published = true }),
    });

    private sealed record ApprovalAnswer(bool Approved);
}

/// <summary>Input of the <c>demo</c> pipeline.</summary>
public sealed record DemoInput(int DelayMs = 50, int ProgressTicks = 2, string? FailStep = null, string? FlakyStep = null);

/// <summary>
/// Every step of <c>demo</c>: takes <c>delayMs</c>, reports <c>progressTicks</c> progress events,
/// fails for good when it is <c>failStep</c>, and fails its first attempt when it is <c>flakyStep</c>.
/// </summary>
public sealed class DemoStepHandler : IStepHandler
{
    public async Task<StepResult> HandleAsync(StepContext context)
    {
        var input = context.GetPipelineInput<DemoInput>() ?? new DemoInput();
        var ticks = Math.Max(0, input.ProgressTicks);
        for (var i = 1; i <= ticks; i++)
        {
            await Task.Delay(Math.Max(0, input.DelayMs) / (ticks + 1), context.CancellationToken);
            await context.ReportProgressAsync(100.0 * i / (ticks + 1), $"{context.StepName}: tick {i} of {ticks}");
        }

        await Task.Delay(Math.Max(0, input.DelayMs) / (ticks + 1), context.CancellationToken);
        if (input.FailStep == context.StepName)
        {
            return StepResult.Fail($"{context.StepName} failed as asked (failStep).");
        }

        if (input.FlakyStep == context.StepName && context.Attempt == 1)
        {
            throw new InvalidOperationException($"{context.StepName} fails its first attempt as asked (flakyStep).");
        }

        return StepResult.Success(new { step = context.StepName, attempt = context.Attempt, at = DateTimeOffset.UtcNow });
    }
}
