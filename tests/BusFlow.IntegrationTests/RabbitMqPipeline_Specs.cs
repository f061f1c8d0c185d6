using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.IntegrationTests.Support;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.IntegrationTests;

/// <summary>The saga's end-to-end scenarios on a real RabbitMQ server, workers and event subscriber included.</summary>
[Collection(RabbitMqCollection.Name)]
public sealed class When_pipelines_run_on_RabbitMQ(RabbitMqBusFlowFixture bus)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [ServerFact]
    public async Task Should_run_the_demo_dag_with_a_flaky_step_to_completion()
    {
        var id = await bus.Start("demo", new { delayMs = 30, progressTicks = 2, flakyStep = "enrich" }, new Dictionary<string, string> { ["run"] = "dag" });
        var end = Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));

        var events = bus.Events.For(id);
        AssertGaplessSeq(events);
        Assert.Equal(["StepStarted", "StepProgress", "StepProgress", "StepFailed", "StepStarted", "StepProgress", "StepProgress", "StepCompleted"], Types(events, "enrich"));
        Assert.True(events.OfType<StepFailed>().Single().WillRetry);
        var mergeStarted = events.OfType<StepStarted>().Single(e => e.StepName == "merge").Seq;
        Assert.All(events.OfType<StepCompleted>().Where(e => e.StepName is "clean" or "enrich"), e => Assert.True(e.Seq < mergeStarted));
        Assert.All(events, e => Assert.Equal("dag", e.Tags["run"]));
        Assert.Equal("report", end.Outputs["report"].GetProperty("step").GetString());
    }

    [ServerFact]
    public async Task Should_fail_the_demo_when_a_step_fails_after_its_retries()
    {
        var id = await bus.Start("demo", new { delayMs = 10, progressTicks = 0, failStep = "clean" });
        var end = Assert.IsType<PipelineFailed>(await bus.Events.WaitForEnd(id, Patience));

        Assert.Equal("clean", end.FailedStep);
        Assert.Equal([true, false], bus.Events.For(id).OfType<StepFailed>().OrderBy(e => e.Seq).Select(e => e.WillRetry));
        Assert.DoesNotContain(bus.Events.For(id).OfType<StepStarted>(), e => e.StepName == "merge");
        AssertGaplessSeq(bus.Events.For(id));
    }

    [ServerFact]
    public async Task Should_map_and_reduce_the_word_counts()
    {
        var id = await bus.Start("wordcount", new { texts = new[] { "a b", "b c", "C a a" } });
        var end = Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));

        var counts = end.Outputs["reduce"].Deserialize<Dictionary<string, int>>();
        Assert.Equal(new Dictionary<string, int> { ["a"] = 3, ["b"] = 2, ["c"] = 2 }, counts);
        Assert.Equal(3, bus.Events.For(id).OfType<StepCompleted>().Count(e => e.StepName == "count" && e.ItemIndex is not null));
        AssertGaplessSeq(bus.Events.For(id));
    }

    [ServerFact]
    public async Task Should_run_a_child_pipeline_whose_events_carry_the_parent_and_its_tags()
    {
        var id = await bus.Start("t-child-parent", new { texts = new[] { "x y x" } }, new Dictionary<string, string> { ["tenant"] = "t1" });
        Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));

        var childId = bus.Events.For(id).OfType<StepStarted>().Single(e => e.StepName == "sub").ChildPipelineId!.Value;
        var child = bus.Events.For(childId);
        AssertGaplessSeq(child);
        Assert.IsType<PipelineCompleted>(child.OrderBy(e => e.Seq).Last());
        Assert.All(child, e => Assert.Equal(id, e.ParentPipelineId));
        Assert.All(child, e => Assert.Equal("t1", e.Tags["tenant"]));
        var sub = bus.Events.For(id).OfType<StepCompleted>().Single(e => e.StepName == "sub");
        Assert.Equal(2, sub.Result!.Value.GetProperty("reduce").GetProperty("x").GetInt32());
    }

    [ServerFact]
    public async Task Should_time_out_an_attempt_cancel_its_worker_and_retry()
    {
        var id = await bus.Start("t-timeout");
        Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));

        var failed = bus.Events.For(id).OfType<StepFailed>().Single();
        Assert.Equal("timeout", failed.Error.Kind);
        Assert.Equal(["StepStarted", "StepFailed", "StepStarted", "StepCompleted"], Types(bus.Events.For(id), "wait"));
        Assert.Contains("wait", bus.Probe.Cancelled);
    }

    [ServerFact]
    public async Task Should_cancel_mid_run_and_stop_the_running_step()
    {
        var id = await bus.Start("t-cancel");
        await bus.Events.WaitFor<StepStarted>(id, e => e.StepName == "hang", Patience);
        await bus.Bus.Publish(new CancelPipeline { PipelineId = id, Reason = "test" });

        Assert.IsType<PipelineCancelled>(await bus.Events.WaitForEnd(id, Patience));
        for (var i = 0; i < 100 && !bus.Probe.Cancelled.Contains("hang"); i++)
        {
            await Task.Delay(50);
        }

        Assert.Contains("hang", bus.Probe.Cancelled);
        Assert.Equal(["PipelineStarted", "StepStarted", "PipelineCancelled"], Types(bus.Events.For(id)));
    }

    [ServerFact]
    public async Task Should_resume_an_answered_suspension()
    {
        var id = await bus.Start("approval", new { title = "post" });
        var suspended = await bus.Events.WaitFor<StepSuspended>(id, timeout: Patience);
        await bus.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = suspended.SuspendId, Payload = JsonSerializer.SerializeToElement(new { approved = true }) });

        var end = Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));
        Assert.True(end.Outputs["publish"].GetProperty("published").GetBoolean());
        AssertGaplessSeq(bus.Events.For(id));
    }

    [ServerFact]
    public async Task Should_fail_a_rejected_approval_and_an_expired_suspension()
    {
        var rejected = await bus.Start("approval");
        var suspended = await bus.Events.WaitFor<StepSuspended>(rejected, timeout: Patience);
        await bus.Bus.Publish(new SubmitStepAction { PipelineId = rejected, SuspendId = suspended.SuspendId, Payload = JsonSerializer.SerializeToElement(new { approved = false }) });
        Assert.Equal("rejected", Assert.IsType<PipelineFailed>(await bus.Events.WaitForEnd(rejected, Patience)).Error.Kind);

        var expired = await bus.Start("t-expire");
        Assert.Equal("suspension_expired", Assert.IsType<PipelineFailed>(await bus.Events.WaitForEnd(expired, Patience)).Error.Kind);
    }

    [ServerFact]
    public async Task Should_use_an_existing_request_consumer_as_a_step()
    {
        var id = await bus.Start("t-price");
        var end = Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, Patience));
        Assert.Equal(9.5m, end.Outputs["price"].GetProperty("price").GetDecimal());
    }

    [ServerFact]
    public async Task Should_fail_fast_or_let_independent_branches_finish_as_configured()
    {
        var failFast = await bus.Start("t-failfast");
        var keepGoing = await bus.Start("t-continue");

        Assert.Equal("b", Assert.IsType<PipelineFailed>(await bus.Events.WaitForEnd(failFast, Patience)).FailedStep);
        Assert.Equal("b", Assert.IsType<PipelineFailed>(await bus.Events.WaitForEnd(keepGoing, Patience)).FailedStep);

        Assert.DoesNotContain(bus.Events.For(failFast).OfType<StepCompleted>(), e => e.StepName == "c");
        Assert.DoesNotContain(bus.Events.For(failFast).OfType<StepStarted>(), e => e.StepName is "d" or "e");
        Assert.Contains(bus.Events.For(keepGoing).OfType<StepCompleted>(), e => e.StepName == "e");
        Assert.DoesNotContain(bus.Events.For(keepGoing).OfType<StepStarted>(), e => e.StepName == "d");
    }

    [ServerFact]
    public async Task Should_keep_every_event_and_gapless_seq_for_many_wide_pipelines_at_once()
    {
        var ids = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => bus.Start("t-wide")));

        foreach (var id in ids)
        {
            Assert.IsType<PipelineCompleted>(await bus.Events.WaitForEnd(id, TimeSpan.FromMinutes(2)));
        }

        foreach (var id in ids)
        {
            var events = bus.Events.For(id);
            AssertGaplessSeq(events);

            // PipelineStarted, 12 steps x (StepStarted + StepCompleted), PipelineCompleted; no duplicates.
            Assert.Equal(26, events.Count);
            Assert.Equal(26, events.Select(e => e.Seq).Distinct().Count());
        }
    }
}
