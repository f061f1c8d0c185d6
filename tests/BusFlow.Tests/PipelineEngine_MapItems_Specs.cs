using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Internal;

namespace BusFlow.Tests;

/// <summary>
/// The engine never changes a work item it was given: it changes a copy put in the item's place.
/// A store shares a map's items between the state it remembers and the state a transition decides
/// on, and writes only the items that are not the ones it gave (docs/architecture.md).
/// </summary>
public sealed class When_a_transition_changes_map_items
{
    private static readonly DateTimeOffset Now = new(2026, 12, 2, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Should_change_copies_and_leave_the_items_it_was_given_as_they_were()
    {
        var definition = new PipelineBuilder("m").Map("each", s => s.Worker("w").Over("input.items").MaxParallelism(2)).Build();
        var state = new PipelineState();
        var input = JsonSerializer.SerializeToElement(new { items = new[] { 1, 2, 3, 4, 5 } });
        new PipelineEngine(definition, state, Now).Start(new StartPipeline { PipelineId = Guid.NewGuid(), Definition = "m", Input = input });
        var items = state.Steps[0].Items;
        Assert.Equal([WorkStatus.Running, WorkStatus.Running, WorkStatus.Pending, WorkStatus.Pending, WorkStatus.Pending], items.Select(i => i.Status));

        // The items as a store would remember them: the same objects, and what they held.
        var given = items.ToArray();
        var held = given.Select(i => JsonSerializer.Serialize(i)).ToArray();

        var engine = new PipelineEngine(definition, state, Now.AddSeconds(1));
        engine.Succeeded(given[0].ExecutionId!.Value, JsonSerializer.SerializeToElement(10));

        Assert.Equal(held, given.Select(i => JsonSerializer.Serialize(i)));
        // Item 0 completed and item 2 started: those two are new objects, the rest are the ones given.
        Assert.Equal([false, true, false, true, true], given.Select((item, i) => ReferenceEquals(item, items[i])));
        Assert.Equal([WorkStatus.Completed, WorkStatus.Running, WorkStatus.Running, WorkStatus.Pending, WorkStatus.Pending], items.Select(i => i.Status));

        // A failure for good stops the siblings: each stopped one is a copy too.
        given = [.. items];
        held = [.. given.Select(i => JsonSerializer.Serialize(i))];
        new PipelineEngine(definition, state, Now.AddSeconds(2)).Faulted(given[1].ExecutionId!.Value, new StepError("boom", "no"), retryable: false);

        Assert.Equal(held, given.Select(i => JsonSerializer.Serialize(i)));
        Assert.Equal([true, false, false, false, false], given.Select((item, i) => ReferenceEquals(item, items[i])));
        Assert.Equal([WorkStatus.Completed, WorkStatus.Failed, WorkStatus.Cancelled, WorkStatus.Cancelled, WorkStatus.Cancelled], items.Select(i => i.Status));
        Assert.Equal(PipelineStatus.Failed, state.Status);
    }

    [Fact]
    public void Should_send_each_item_its_element_and_not_the_whole_list_again()
    {
        var overInput = new PipelineBuilder("m").Map("each", s => s.Worker("w").Over("input.items")).Build();
        var engine = new PipelineEngine(overInput, new PipelineState(), Now);
        var input = JsonSerializer.SerializeToElement(new { mode = "fast", items = new[] { "a", "b" }, limit = 3 });
        engine.Start(new StartPipeline { PipelineId = Guid.NewGuid(), Definition = "m", Input = input });

        Assert.Equal(["\"a\"", "\"b\""], engine.Decision.StepCommands.Select(c => c.Item!.Value.GetRawText()));
        Assert.All(engine.Decision.StepCommands, c => Assert.Equal("""{"mode":"fast","limit":3}""", c.PipelineInput!.Value.GetRawText()));

        var overOutput = new PipelineBuilder("o")
            .Step("split", s => s.Worker("w"))
            .Step("other", s => s.Worker("w"))
            .Map("each", s => s.Worker("w").Over("split").Consumes("other"))
            .Build();
        var state = new PipelineState();
        var start = new PipelineEngine(overOutput, state, Now);
        start.Start(new StartPipeline { PipelineId = Guid.NewGuid(), Definition = "o", Input = input });
        new PipelineEngine(overOutput, state, Now).Succeeded(start.Decision.StepCommands[0].ExecutionId, JsonSerializer.SerializeToElement(new[] { 1, 2 }));
        var last = new PipelineEngine(overOutput, state, Now);
        last.Succeeded(start.Decision.StepCommands[1].ExecutionId, JsonSerializer.SerializeToElement("x"));

        Assert.Equal(2, last.Decision.StepCommands.Count);
        Assert.All(last.Decision.StepCommands, c => Assert.Equal(["other"], c.Inputs.Keys));
        Assert.All(last.Decision.StepCommands, c => Assert.Equal(input.GetRawText(), c.PipelineInput!.Value.GetRawText()));
    }

    [Fact]
    public void Should_leave_the_items_it_was_given_as_they_were_through_every_kind_of_transition()
    {
        var definition = new PipelineBuilder("m")
            .Map("each", s => s.Worker("w").Over("input.items").MaxParallelism(3).Timeout(TimeSpan.FromMinutes(1)).Retry(3, TimeSpan.FromSeconds(5)))
            .Build();
        var state = new PipelineState();
        new PipelineEngine(definition, state, Now).Start(new StartPipeline
        {
            PipelineId = Guid.NewGuid(),
            Definition = "m",
            Input = JsonSerializer.SerializeToElement(new { items = new[] { 1, 2, 3, 4, 5, 6 } }),
        });
        var items = state.Steps[0].Items;
        var at = Now;

        // Each transition, on the items the previous one left: none of the objects it was given changes.
        void Transition(Action<PipelineEngine> apply, TimeSpan later)
        {
            var given = items.ToArray();
            var held = given.Select(i => JsonSerializer.Serialize(i)).ToArray();
            at += later;
            apply(new PipelineEngine(definition, state, at));
            Assert.Equal(held, given.Select(i => JsonSerializer.Serialize(i)));
            Assert.Contains(given.Select((item, i) => ReferenceEquals(item, items[i])), same => !same);
        }

        Transition(e => e.Suspended(new ReportStepSuspended { PipelineId = state.CorrelationId, ExecutionId = items[0].ExecutionId!.Value }), TimeSpan.FromSeconds(1));
        Assert.Equal(WorkStatus.Suspended, items[0].Status);
        Transition(e => e.Answer(items[0].SuspendId!.Value, JsonSerializer.SerializeToElement("yes")), TimeSpan.FromSeconds(1));
        Assert.Equal(WorkStatus.Running, items[0].Status);
        Transition(e => e.Faulted(items[1].ExecutionId!.Value, new StepError("flaky", "again"), retryable: true), TimeSpan.FromSeconds(1));
        Assert.Equal(WorkStatus.WaitingRetry, items[1].Status);
        // Past the retry's delay and the others' timeout: the retry runs again, the overdue attempts time out.
        Transition(e => e.Wake(), TimeSpan.FromMinutes(2));
        Assert.Equal(2, items[1].Attempt);
        Assert.Contains(items, i => i.Status == WorkStatus.WaitingRetry && i.Error?.Kind == "timeout");
        Transition(e => e.Cancel("enough"), TimeSpan.FromSeconds(1));
        Assert.Equal(PipelineStatus.Cancelled, state.Status);
        Assert.DoesNotContain(items, i => i.Status is WorkStatus.Running or WorkStatus.Pending or WorkStatus.Suspended or WorkStatus.WaitingRetry);
    }

    [Fact]
    public void Should_tell_a_map_item_that_asks_for_its_list_where_its_element_is()
    {
        var command = new ExecuteStep
        {
            PipelineId = Guid.NewGuid(),
            ExecutionId = Guid.NewGuid(),
            Definition = "o",
            StepName = "each",
            Worker = "w",
            Attempt = 1,
            ItemIndex = 0,
            Item = JsonSerializer.SerializeToElement(1),
            Inputs = new Dictionary<string, JsonElement> { ["other"] = JsonSerializer.SerializeToElement("x") },
        };
        var context = new StepContext(command, JsonSerializerOptions.Web, _ => Task.CompletedTask, CancellationToken.None);

        Assert.Equal("x", context.GetInput<string>("other"));
        var error = Assert.Throws<KeyNotFoundException>(() => context.GetInput<int[]>("split"));
        Assert.Contains("GetItem", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, context.GetItem<int>());
    }
}
