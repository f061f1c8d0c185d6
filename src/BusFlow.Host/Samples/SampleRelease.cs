namespace BusFlow.Host.Samples;

/// <summary>
/// The <c>release</c> sample: one pipeline in two versions, to show (and test) a rolling deploy
/// that changes a definition (docs/operations.md, "Deploying a changed pipeline"). Version 1 runs
/// <c>build</c>, <c>approve</c> (suspends for an answer) and <c>ship</c>; version 2 drops
/// <c>ship</c> and ends with <c>announce</c>. <c>Samples:ReleaseVersions</c> says which this process
/// registers: <c>1</c>, <c>2</c>, or <c>1,2</c> (the default: version 1 draining beside version 2,
/// as a process of the new release would keep it until the last version 1 pipeline ends).
/// </summary>
public static class SampleRelease
{
    public const string Worker = "release-step";

    public const string Setting = "Samples:ReleaseVersions";

    public static void Register(BusFlowBuilder busflow, IReadOnlyCollection<string> versions)
    {
        var unknown = versions.Except(["1", "2"]).ToList();
        if (unknown.Count > 0 || versions.Count == 0)
        {
            throw new InvalidOperationException($"Invalid setting '{Setting}' = '{string.Join(",", versions)}': use 1, 2 or 1,2.");
        }

        if (versions.Contains("1"))
        {
            busflow.AddPipeline("release", p =>
            {
                Steps(p.Version("1"), last: "ship");
                if (versions.Contains("2"))
                {
                    p.Draining();
                }
            });
        }

        if (versions.Contains("2"))
        {
            busflow.AddPipeline("release", p => Steps(p.Version("2"), last: "announce"));
        }
    }

    private static void Steps(PipelineBuilder p, string last) => p
        .Then("build", s => s.Worker(Worker))
        .Then("approve", s => s.Worker(Worker).SuspensionTimeout(TimeSpan.FromHours(1)))
        .Then(last, s => s.Worker(Worker));

    /// <summary>The <c>release-step</c> worker: <c>approve</c> waits for an answer; every other step succeeds at once.</summary>
    public static Task<StepResult> Step(StepContext context) => Task.FromResult(context.StepName switch
    {
        "approve" when context.Resume is null => StepResult.Suspend("Release it?", new { question = "release?" }),
        _ => StepResult.Success(new { step = context.StepName }),
    });
}
