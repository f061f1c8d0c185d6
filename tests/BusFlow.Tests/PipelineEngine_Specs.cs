using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Internal;

namespace BusFlow.Tests;

/// <summary>
/// The engine driven directly, without a bus or a saga: what one transition decides from a state
/// and a message at a given time. The state machine specs check the same through MassTransit.
/// </summary>
public sealed class When_the_engine_decides_transitions
{
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private static readonly PipelineDefinition TwoSteps = new PipelineBuilder("two")
        .Step("first", s => s.Worker("w").Retry(2, TimeSpan.FromSeconds(10)))
        .Then("second", s => s.Worker("w"))
        .Build();

    private static (PipelineState State, PipelineDecision Decision) Started()
    {
        var state = new PipelineState();
        var engine = new PipelineEngine(TwoSteps, state, Now);
        engine.Start(new StartPipeline
        {
            PipelineId = Guid.NewGuid(),
            Definition = "two",
            Tags = new Dictionary<string, string> { ["customer"] = "c-1" },
        });
        return (state, engine.Decision);
    }

    [Fact]
    public void Should_give_every_event_its_envelope_once_with_the_next_seqs()
    {
        var (state, started) = Started();
        Assert.Equal(["PipelineStarted", "StepStarted"], started.Events.Select(e => e.EventType));
        var command = Assert.Single(started.StepCommands);

        var later = Now.AddSeconds(3);
        var engine = new PipelineEngine(TwoSteps, state, later);
        engine.Succeeded(command.ExecutionId, JsonSerializer.SerializeToElement(1));

        Assert.Equal(["StepCompleted", "StepStarted"], engine.Decision.Events.Select(e => e.EventType));
        var all = started.Events.Concat(engine.Decision.Events).ToList();
        Assert.Equal([1L, 2, 3, 4], all.Select(e => e.Seq));
        Assert.Equal(4, state.LastSeq);
        Assert.All(all, e =>
        {
            Assert.Equal(state.CorrelationId, e.PipelineId);
            Assert.Equal("two", e.Definition);
            Assert.Equal("c-1", e.Tags["customer"]);
        });
        Assert.All(started.Events, e => Assert.Equal(Now, e.Timestamp));
        Assert.All(engine.Decision.Events, e => Assert.Equal(later, e.Timestamp));
        Assert.Equal(("second", 1), (((StepStarted)engine.Decision.Events[1]).StepName, ((StepStarted)engine.Decision.Events[1]).Attempt));
    }

    [Fact]
    public void Should_retry_a_fault_when_it_falls_due_and_ignore_a_report_of_the_old_attempt()
    {
        var (state, started) = Started();
        var first = Assert.Single(started.StepCommands);

        var faulted = new PipelineEngine(TwoSteps, state, Now.AddSeconds(1));
        faulted.Faulted(first.ExecutionId, new StepError("boom", "it broke"), retryable: true);
        Assert.Equal(["StepFailed"], faulted.Decision.Events.Select(e => e.EventType));
        Assert.Empty(faulted.Decision.StepCommands);
        Assert.Equal(Now.AddSeconds(11), state.NextDeadline);

        // Early: nothing is due, nothing is recorded.
        var early = new PipelineEngine(TwoSteps, state, Now.AddSeconds(5));
        early.Wake();
        Assert.Empty(early.Decision.Events);

        var due = new PipelineEngine(TwoSteps, state, Now.AddSeconds(11));
        due.Wake();
        var retry = Assert.Single(due.Decision.StepCommands);
        Assert.Equal(2, retry.Attempt);
        Assert.NotEqual(first.ExecutionId, retry.ExecutionId);
        Assert.Equal(4, Assert.Single(due.Decision.Events).Seq);

        // The first attempt's late report changes nothing.
        var stale = new PipelineEngine(TwoSteps, state, Now.AddSeconds(12));
        stale.Succeeded(first.ExecutionId, null);
        Assert.Empty(stale.Decision.Events);
        Assert.Equal(4, state.LastSeq);
    }

    [Fact]
    public void Should_cancel_every_running_step_and_tell_its_worker()
    {
        var (state, started) = Started();
        var running = Assert.Single(started.StepCommands);

        var engine = new PipelineEngine(TwoSteps, state, Now.AddSeconds(2));
        engine.Cancel("changed my mind");

        var cancelled = Assert.IsType<PipelineCancelled>(Assert.Single(engine.Decision.Events));
        Assert.Equal(3, cancelled.Seq);
        Assert.Equal(PipelineStatus.Cancelled, state.Status);
        Assert.Equal([running.ExecutionId], Assert.Single(engine.Decision.StepCancels).ExecutionIds);
    }
}

/// <summary>The envelope is set by the engine alone, and required where events are read.</summary>
public sealed class When_an_event_is_read_without_its_envelope
{
    [Theory]
    [InlineData("pipelineId")]
    [InlineData("seq")]
    [InlineData("timestamp")]
    [InlineData("definition")]
    public void Should_refuse_it(string missing)
    {
        var complete = PipelineEventJson.Serialize(new StepCompleted
        {
            PipelineId = Guid.NewGuid(),
            Seq = 3,
            Timestamp = DateTimeOffset.UnixEpoch,
            Definition = "d",
            StepName = "s",
            StepIndex = 0,
            Attempt = 1,
        });
        Assert.IsType<StepCompleted>(PipelineEventJson.TryDeserialize(complete));

        var node = System.Text.Json.Nodes.JsonNode.Parse(complete)!.AsObject();
        Assert.True(node.Remove(missing), $"{missing} is not in {complete}");
        Assert.Null(PipelineEventJson.TryDeserialize(node.ToJsonString()));
    }
}

/// <summary>Which consume failures are retried until they pass (or the process ends) instead of going to the error queue.</summary>
public sealed class When_a_consumer_finds_a_disposed_object
{
    [Fact]
    public void Should_retry_only_when_the_process_is_going_away()
    {
        var roles = new BusFlowRoles(RunSaga: true, TransientFailures: [], DefinitionWait: TimeSpan.Zero);

        // The host disposed its services while the bus still hands out messages.
        Assert.True(roles.IsTransient(new ObjectDisposedException("IServiceProvider")));
        // A step's effect that kept a disposed stream or scope is a bug: quick retries, then the error queue.
        Assert.False(roles.IsTransient(new ObjectDisposedException(nameof(MemoryStream))));
        Assert.False(roles.IsTransient(new InvalidOperationException()));
    }
}
