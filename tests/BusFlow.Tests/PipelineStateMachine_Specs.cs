using System.Collections.Concurrent;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Tests.Support;
using MassTransit;
using static BusFlow.Testing.EventAssertions;

namespace BusFlow.Tests;

public sealed class When_a_sequential_pipeline_runs
{
    [Fact]
    public async Task Should_run_the_steps_in_order_and_record_gapless_events()
    {
        var order = new ConcurrentQueue<string>();
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("echo", ctx =>
            {
                order.Enqueue(ctx.StepName);
                return Task.FromResult(StepResult.Success(new { step = ctx.StepName }));
            })
            .AddPipeline("seq", p => p.Then("a", s => s.Worker("echo")).Then("b", s => s.Worker("echo")).Then("c", s => s.Worker("echo"))));

        var id = await bf.StartPipeline("seq", tags: new Dictionary<string, string> { ["team"] = "x" });
        var end = await bf.Events.WaitForEnd(id);

        var completed = Assert.IsType<PipelineCompleted>(end);
        Assert.Equal(["a", "b", "c"], order);
        var events = bf.Events.For(id);
        AssertGaplessSeq(events);
        Assert.Equal(
            ["PipelineStarted", "StepStarted", "StepCompleted", "StepStarted", "StepCompleted", "StepStarted", "StepCompleted", "PipelineCompleted"],
            Types(events));
        Assert.All(events, e => Assert.Equal("x", e.Tags["team"]));
        Assert.Equal("c", completed.Outputs["c"].GetProperty("step").GetString());
        Assert.NotNull(await bf.Saga.Exists(id, m => m.Completed));
    }
}

public sealed class When_a_dag_has_parallel_branches_that_join
{
    [Fact]
    public async Task Should_run_the_branches_at_once_and_give_the_join_both_outputs()
    {
        var running = 0;
        var maxRunning = 0;
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("work", async ctx =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref maxRunning, now);
                await Task.Delay(150, ctx.CancellationToken);
                Interlocked.Decrement(ref running);
                return ctx.StepName == "merge"
                    ? StepResult.Success(new { clean = ctx.GetInput<JsonElement>("clean").GetProperty("v").GetString(), enrich = ctx.GetInput<JsonElement>("enrich").GetProperty("v").GetString() })
                    : StepResult.Success(new { v = ctx.StepName + "-out" });
            })
            .AddPipeline("dag", p => p
                .Step("fetch", s => s.Worker("work"))
                .Step("clean", s => s.Worker("work").After("fetch"))
                .Step("enrich", s => s.Worker("work").After("fetch"))
                .Step("merge", s => s.Worker("work").Consumes("clean", "enrich"))));

        var id = await bf.StartPipeline("dag");
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        Assert.Equal("clean-out", end.Outputs["merge"].GetProperty("clean").GetString());
        Assert.Equal("enrich-out", end.Outputs["merge"].GetProperty("enrich").GetString());
        Assert.Equal(2, maxRunning);
        var events = bf.Events.For(id).OrderBy(e => e.Seq).ToList();
        AssertGaplessSeq(events);
        var mergeStarted = events.OfType<StepStarted>().Single(e => e.StepName == "merge").Seq;
        Assert.All(events.OfType<StepCompleted>().Where(e => e.StepName is "clean" or "enrich"), e => Assert.True(e.Seq < mergeStarted));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}

public sealed class When_a_map_reduce_pipeline_runs
{
    [Fact]
    public async Task Should_map_every_item_within_the_parallelism_limit_and_reduce_in_item_order()
    {
        var running = 0;
        var maxRunning = 0;
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("square", async ctx =>
            {
                var now = Interlocked.Increment(ref running);
                lock (Gate)
                {
                    maxRunning = Math.Max(maxRunning, now);
                }

                await Task.Delay(40, ctx.CancellationToken);
                Interlocked.Decrement(ref running);
                var n = ctx.GetItem<int>();
                return StepResult.Success(n * n);
            })
            .AddWorker("sum", ctx => Task.FromResult(StepResult.Success(new { total = ctx.GetInput<int[]>("squares")!.Sum(), items = ctx.GetInput<int[]>("squares") })))
            .AddPipeline("squares", p => p
                .Map("squares", s => s.Worker("square").Over("input.numbers").MaxParallelism(3))
                .Step("sum", s => s.Consumes("squares"))));

        var id = await bf.StartPipeline("squares", new { numbers = Enumerable.Range(1, 10).ToArray() });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        Assert.Equal(385, end.Outputs["sum"].GetProperty("total").GetInt32());
        Assert.Equal(Enumerable.Range(1, 10).Select(n => n * n), end.Outputs["sum"].GetProperty("items").EnumerateArray().Select(e => e.GetInt32()));
        Assert.InRange(maxRunning, 2, 3);
        var events = bf.Events.For(id);
        AssertGaplessSeq(events);
        Assert.Equal(Enumerable.Range(0, 10), events.OfType<StepCompleted>().Where(e => e.StepName == "squares" && e.ItemIndex is not null).Select(e => e.ItemIndex!.Value).Order());
        Assert.Single(events.OfType<StepCompleted>(), e => e.StepName == "squares" && e.ItemIndex is null);
    }

    [Fact]
    public async Task Should_complete_a_map_over_an_empty_list_with_an_empty_result()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("square", ctx => Task.FromResult(StepResult.Success(1)))
            .AddWorker("sum", ctx => Task.FromResult(StepResult.Success(ctx.GetInput<int[]>("squares")!.Length)))
            .AddPipeline("squares", p => p
                .Map("squares", s => s.Worker("square").Over("input.numbers"))
                .Step("sum", s => s.Consumes("squares"))));

        var id = await bf.StartPipeline("squares", new { numbers = Array.Empty<int>() });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));
        Assert.Equal(0, end.Outputs["sum"].GetInt32());
    }

    [Fact]
    public async Task Should_fail_a_map_over_more_items_than_its_limit_naming_the_limit_and_run_none()
    {
        var runs = 0;
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("square", ctx =>
            {
                Interlocked.Increment(ref runs);
                return Task.FromResult(StepResult.Success(1));
            })
            .AddPipeline("squares", p => p.Map("squares", s => s.Worker("square").Over("input.numbers").MaxItems(5))));

        var tooMany = await bf.StartPipeline("squares", new { numbers = Enumerable.Range(0, 6).ToArray() });
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(tooMany));
        Assert.Equal("map_too_large", end.Error.Kind);
        Assert.Contains("6 items", end.Error.Message, StringComparison.Ordinal);
        Assert.Contains("limit is 5", end.Error.Message, StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref runs));

        var atTheLimit = await bf.StartPipeline("squares", new { numbers = Enumerable.Range(0, 5).ToArray() });
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(atTheLimit));
        Assert.Equal(5, Volatile.Read(ref runs));
    }

    [Fact]
    public async Task Should_refuse_a_progress_message_over_its_limit_and_record_none()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("chatty", async ctx =>
            {
                try
                {
                    await ctx.ReportProgressAsync(50, new string('x', StepContext.MaxProgressMessageLength + 1));
                    return StepResult.Success("accepted");
                }
                catch (ArgumentException e)
                {
                    await ctx.ReportProgressAsync(60, new string('y', StepContext.MaxProgressMessageLength));
                    return StepResult.Success(e.Message);
                }
            })
            .AddPipeline("chatty", p => p.Step("chatty")));

        var id = await bf.StartPipeline("chatty", new { });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));
        Assert.Contains($"at most {StepContext.MaxProgressMessageLength} characters", end.Outputs["chatty"].GetString(), StringComparison.Ordinal);
        var progress = Assert.Single(bf.Events.For(id).OfType<StepProgress>());
        Assert.Equal(StepContext.MaxProgressMessageLength, progress.Message!.Length);
    }

    [Fact]
    public async Task Should_fail_clearly_when_the_mapped_value_is_not_a_list()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("square", ctx => Task.FromResult(StepResult.Success(1)))
            .AddPipeline("squares", p => p.Map("squares", s => s.Worker("square").Over("input.numbers"))));

        var id = await bf.StartPipeline("squares", new { numbers = "not a list" });
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));
        Assert.Equal("invalid_input", end.Error.Kind);
        Assert.Contains("input.numbers", end.Error.Message, StringComparison.Ordinal);
    }

    private static readonly Lock Gate = new();
}

public sealed class When_a_step_runs_a_child_pipeline
{
    [Fact]
    public async Task Should_wait_for_the_child_and_tag_its_events_with_the_parent()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("echo", ctx => Task.FromResult(StepResult.Success(new { step = ctx.StepName, input = ctx.GetPipelineInput<JsonElement>() })))
            .AddPipeline("child", p => p.Then("inner", s => s.Worker("echo")))
            .AddPipeline("parent", p => p
                .Step("before", s => s.Worker("echo"))
                .Child("sub", "child", s => s.After("before"))
                .Step("after", s => s.Worker("echo").Consumes("sub"))));

        var id = await bf.StartPipeline("parent", new { n = 7 }, new Dictionary<string, string> { ["order"] = "42" });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        var started = bf.Events.For(id).OfType<StepStarted>().Single(e => e.StepName == "sub");
        var childId = started.ChildPipelineId!.Value;
        var childEvents = bf.Events.For(childId);
        AssertGaplessSeq(childEvents);
        AssertGaplessSeq(bf.Events.For(id));
        Assert.All(childEvents, e => Assert.Equal(id, e.ParentPipelineId));
        Assert.All(childEvents, e => Assert.Equal("42", e.Tags["order"]));
        Assert.Equal("sub", Assert.IsType<PipelineStarted>(childEvents[0]).ParentStepName);
        Assert.Equal(7, childEvents.OfType<PipelineCompleted>().Single().Outputs["inner"].GetProperty("input").GetProperty("n").GetInt32());
        var subResult = bf.Events.For(id).OfType<StepCompleted>().Single(e => e.StepName == "sub").Result!.Value;
        Assert.Equal("inner", subResult.GetProperty("inner").GetProperty("step").GetString());
        Assert.Equal("after", end.Outputs["after"].GetProperty("step").GetString());
        Assert.True(childEvents.OfType<PipelineCompleted>().Single().Timestamp <= end.Timestamp);
    }

    [Fact]
    public async Task Should_fail_the_parent_step_when_the_child_fails()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("boom", ctx => Task.FromResult(StepResult.Fail("child step broke", retryable: false)))
            .AddPipeline("child", p => p.Then("inner", s => s.Worker("boom")))
            .AddPipeline("parent", p => p.Child("sub", "child")));

        var id = await bf.StartPipeline("parent");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));
        Assert.Equal("sub", end.FailedStep);
        Assert.Contains("child step broke", end.Error.Message, StringComparison.Ordinal);
    }
}

public sealed class When_a_step_fails
{
    [Fact]
    public async Task Should_retry_with_back_off_and_then_succeed()
    {
        var attempts = new ConcurrentQueue<(int Attempt, DateTimeOffset At)>();
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("flaky", ctx =>
            {
                attempts.Enqueue((ctx.Attempt, DateTimeOffset.UtcNow));
                return ctx.Attempt < 3 ? throw new InvalidOperationException($"attempt {ctx.Attempt} broke") : Task.FromResult(StepResult.Success("ok"));
            })
            .AddPipeline("retry", p => p.Then("flaky", s => s.Retry(5, TimeSpan.FromMilliseconds(100), multiplier: 2))));

        var id = await bf.StartPipeline("retry");
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        var events = bf.Events.For(id);
        AssertGaplessSeq(events);
        Assert.Equal(
            ["StepStarted", "StepFailed", "StepStarted", "StepFailed", "StepStarted", "StepCompleted"],
            Types(events, "flaky"));
        var failures = events.OfType<StepFailed>().OrderBy(e => e.Seq).ToList();
        Assert.All(failures, f => Assert.True(f.WillRetry));
        Assert.Equal("InvalidOperationException", failures[0].Error.Kind);
        Assert.Equal([1, 2], failures.Select(f => f.Attempt));
        var times = attempts.ToList();
        Assert.True(times[1].At - times[0].At >= TimeSpan.FromMilliseconds(90), "the first retry waits the initial delay");
        Assert.True(times[2].At - times[1].At >= TimeSpan.FromMilliseconds(190), "the second retry waits twice as long");
    }

    [Fact]
    public async Task Should_fail_the_pipeline_when_retries_are_exhausted()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("broken", ctx => throw new InvalidOperationException("always broken"))
            .AddWorker("never", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("doomed", p => p
                .Then("broken", s => s.Retry(3, TimeSpan.FromMilliseconds(20)))
                .Then("never")));

        var id = await bf.StartPipeline("doomed");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));

        Assert.Equal("broken", end.FailedStep);
        Assert.Equal("always broken", end.Error.Message);
        var failures = bf.Events.For(id).OfType<StepFailed>().OrderBy(e => e.Seq).ToList();
        Assert.Equal([true, true, false], failures.Select(f => f.WillRetry));
        Assert.Equal([1, 2, 3], failures.Select(f => f.Attempt));
        Assert.DoesNotContain(bf.Events.For(id).OfType<StepStarted>(), e => e.StepName == "never");
        var state = await bf.Saga.Exists(id, m => m.Failed);
        Assert.NotNull(state);
    }

    [Fact]
    public async Task Should_not_retry_a_failure_the_step_marks_permanent()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("refuse", ctx => Task.FromResult(StepResult.Fail("bad input", retryable: false, kind: "validation")))
            .AddPipeline("refused", p => p.Then("refuse", s => s.Retry(5, TimeSpan.FromMilliseconds(10)))));

        var id = await bf.StartPipeline("refused");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));
        Assert.Equal("validation", end.Error.Kind);
        Assert.Single(bf.Events.For(id).OfType<StepFailed>());
    }
}

public sealed class When_a_step_times_out
{
    [Fact]
    public async Task Should_fail_the_attempt_cancel_the_worker_and_retry()
    {
        var cancelled = new ConcurrentQueue<int>();
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("slow", async ctx =>
            {
                if (ctx.Attempt == 1)
                {
                    try
                    {
                        await Task.Delay(TimeSpan.FromSeconds(20), ctx.CancellationToken);
                    }
                    catch (OperationCanceledException)
                    {
                        cancelled.Enqueue(ctx.Attempt);
                        throw;
                    }
                }

                return StepResult.Success("fast enough");
            })
            .AddPipeline("timed", p => p.Then("slow", s => s.Timeout(TimeSpan.FromMilliseconds(300)).Retry(2, TimeSpan.FromMilliseconds(10)))));

        var id = await bf.StartPipeline("timed");
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        var failed = bf.Events.For(id).OfType<StepFailed>().Single();
        Assert.Equal("timeout", failed.Error.Kind);
        Assert.True(failed.WillRetry);
        Assert.True(failed.DurationMs >= 290, $"timed out after {failed.DurationMs} ms");
        Assert.Equal([1], cancelled);
        Assert.Equal(["StepStarted", "StepFailed", "StepStarted", "StepCompleted"], Types(bf.Events.For(id), "slow"));
    }
}

public sealed class When_a_pipeline_is_cancelled
{
    [Fact]
    public async Task Should_signal_running_steps_dispatch_nothing_more_and_record_the_cancel()
    {
        var stepCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("long", async ctx =>
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(30), ctx.CancellationToken);
                }
                catch (OperationCanceledException)
                {
                    stepCancelled.TrySetResult();
                    throw;
                }

                return StepResult.Success();
            })
            .AddWorker("next", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("cancellable", p => p.Then("long").Then("next")));

        var id = await bf.StartPipeline("cancellable");
        await bf.Events.WaitFor<StepStarted>(id, e => e.StepName == "long");
        await bf.Harness.Bus.Publish(new CancelPipeline { PipelineId = id, Reason = "user asked" });

        var end = Assert.IsType<PipelineCancelled>(await bf.Events.WaitForEnd(id));
        Assert.Equal("user asked", end.Reason);
        await stepCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        var events = bf.Events.For(id);
        AssertGaplessSeq(events);
        Assert.Equal(["PipelineStarted", "StepStarted", "PipelineCancelled"], Types(events));
        var state = await bf.Saga.Exists(id, m => m.Cancelled);
        Assert.NotNull(state);
        Assert.Equal(StepStatus.Cancelled, bf.State(id)!.Steps[0].Status);
    }

    [Fact]
    public async Task Should_ignore_a_cancel_of_a_finished_pipeline()
    {
        await using var bf = await BusFlowHarness.Start(b => b
            .AddWorker("quick", ctx => Task.FromResult(StepResult.Success()))
            .AddPipeline("quick", p => p.Then("quick")));

        var id = await bf.StartPipeline("quick");
        Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));
        await bf.Harness.Bus.Publish(new CancelPipeline { PipelineId = id });
        Assert.True(await bf.Harness.Consumed.Any<CancelPipeline>(x => x.Context.Message.PipelineId == id));
        await Task.Delay(100);
        Assert.DoesNotContain(bf.Events.For(id), e => e is PipelineCancelled);
        Assert.Equal(PipelineStatus.Completed, bf.State(id)!.Status);
    }
}

public sealed class When_a_step_suspends_for_an_answer
{
    private static void Approval(BusFlowBuilder b, TimeSpan suspension) => b
        .AddWorker("ask", ctx => Task.FromResult(ctx.Resume is null
            ? StepResult.Suspend("approve?", new { amount = 10 })
            : StepResult.Success(new { answer = ctx.GetResume<JsonElement>().GetProperty("approved").GetBoolean() })))
        .AddWorker("publish", ctx => Task.FromResult(StepResult.Success(ctx.GetInput<JsonElement>("ask"))))
        .AddPipeline("approval", p => p
            .Then("ask", s => s.SuspensionTimeout(suspension))
            .Step("publish", s => s.Consumes("ask")));

    [Fact]
    public async Task Should_resume_the_step_with_the_answer()
    {
        await using var bf = await BusFlowHarness.Start(b => Approval(b, TimeSpan.FromMinutes(5)));

        var id = await bf.StartPipeline("approval");
        var suspended = await bf.Events.WaitFor<StepSuspended>(id);
        Assert.Equal("approve?", suspended.Reason);
        Assert.Equal(10, suspended.Request!.Value.GetProperty("amount").GetInt32());
        Assert.True(suspended.ExpiresAt > DateTimeOffset.UtcNow.AddMinutes(4));

        var answer = JsonSerializer.SerializeToElement(new { approved = true });
        await bf.Harness.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = suspended.SuspendId, Payload = answer });
        var end = Assert.IsType<PipelineCompleted>(await bf.Events.WaitForEnd(id));

        Assert.True(end.Outputs["publish"].GetProperty("answer").GetBoolean());
        Assert.Equal(["StepStarted", "StepSuspended", "StepStarted", "StepCompleted"], Types(bf.Events.For(id), "ask"));

        // A second answer to the same suspension changes nothing.
        await bf.Harness.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = suspended.SuspendId, Payload = answer });
        await Task.Delay(100);
        AssertGaplessSeq(bf.Events.For(id));
        Assert.Single(bf.Events.For(id).OfType<PipelineCompleted>());
    }

    [Fact]
    public async Task Should_fail_the_step_when_the_suspension_expires()
    {
        await using var bf = await BusFlowHarness.Start(b => Approval(b, TimeSpan.FromMilliseconds(300)));

        var id = await bf.StartPipeline("approval");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));
        Assert.Equal("suspension_expired", end.Error.Kind);
        var failed = bf.Events.For(id).OfType<StepFailed>().Single();
        Assert.False(failed.WillRetry);

        // An answer arriving after expiry does not resurrect the step.
        var suspended = bf.Events.For(id).OfType<StepSuspended>().Single();
        await bf.Harness.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = suspended.SuspendId });
        await Task.Delay(100);
        Assert.Equal(PipelineStatus.Failed, bf.State(id)!.Status);
    }

    [Fact]
    public async Task Should_ignore_an_answer_to_an_unknown_suspension()
    {
        await using var bf = await BusFlowHarness.Start(b => Approval(b, TimeSpan.FromMinutes(5)));

        var id = await bf.StartPipeline("approval");
        await bf.Events.WaitFor<StepSuspended>(id);
        await bf.Harness.Bus.Publish(new SubmitStepAction { PipelineId = id, SuspendId = NewId.NextGuid() });
        Assert.True(await bf.Harness.Consumed.Any<SubmitStepAction>());
        await Task.Delay(100);
        Assert.Equal(WorkStatus.Suspended, bf.State(id)!.Steps[0].Items[0].Status);
        Assert.Equal(3, bf.Events.For(id).Count);
    }
}

public sealed class When_a_branch_fails
{
    private static Action<BusFlowBuilder> Pipeline(FailurePolicy policy, ConcurrentQueue<string> cancelled) => b => b
        .AddWorker("ok", ctx => Task.FromResult(StepResult.Success(ctx.StepName)))
        .AddWorker("fail", ctx => Task.FromResult(StepResult.Fail("b broke", retryable: false)))
        .AddWorker("slow", async ctx =>
        {
            try
            {
                // Failing fast must cancel it however slowly the machine runs: it would run long;
                // letting branches finish must see it complete.
                await Task.Delay(policy == FailurePolicy.FailPipeline ? 30_000 : 400, ctx.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                cancelled.Enqueue(ctx.StepName);
                throw;
            }

            return StepResult.Success(ctx.StepName);
        })
        .AddPipeline("branches", p => p
            .Step("a", s => s.Worker("ok"))
            .Step("b", s => s.Worker("fail").After("a").OnFailure(policy))
            .Step("c", s => s.Worker("slow").After("a"))
            .Step("d", s => s.Worker("ok").After("b"))
            .Step("e", s => s.Worker("ok").After("c")));

    [Fact]
    public async Task Should_fail_fast_and_cancel_running_siblings_by_default()
    {
        var cancelled = new ConcurrentQueue<string>();
        await using var bf = await BusFlowHarness.Start(Pipeline(FailurePolicy.FailPipeline, cancelled));

        var id = await bf.StartPipeline("branches");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));

        Assert.Equal("b", end.FailedStep);
        await WaitUntil(() => cancelled.Contains("c"));
        var started = bf.Events.For(id).OfType<StepStarted>().Select(e => e.StepName).ToList();
        Assert.DoesNotContain("d", started);
        Assert.DoesNotContain("e", started);
        Assert.DoesNotContain(bf.Events.For(id).OfType<StepCompleted>(), e => e.StepName == "c");
        Assert.Equal(StepStatus.Cancelled, bf.State(id)!.Steps.Single(s => s.Name == "c").Status);
    }

    [Fact]
    public async Task Should_let_independent_branches_finish_when_asked()
    {
        var cancelled = new ConcurrentQueue<string>();
        await using var bf = await BusFlowHarness.Start(Pipeline(FailurePolicy.ContinueIndependent, cancelled));

        var id = await bf.StartPipeline("branches");
        var end = Assert.IsType<PipelineFailed>(await bf.Events.WaitForEnd(id));

        Assert.Equal("b", end.FailedStep);
        Assert.Empty(cancelled);
        var completed = bf.Events.For(id).OfType<StepCompleted>().Select(e => e.StepName).ToList();
        Assert.Contains("c", completed);
        Assert.Contains("e", completed);
        Assert.DoesNotContain(bf.Events.For(id).OfType<StepStarted>(), e => e.StepName == "d");
        Assert.Equal(StepStatus.Skipped, bf.State(id)!.Steps.Single(s => s.Name == "d").Status);
        AssertGaplessSeq(bf.Events.For(id));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}
