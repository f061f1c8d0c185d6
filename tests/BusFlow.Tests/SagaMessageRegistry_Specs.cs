using BusFlow.Contracts;
using BusFlow.Internal;
using Microsoft.Extensions.Logging.Abstractions;

namespace BusFlow.Tests;

/// <summary>
/// The saga's messages are declared once (<see cref="SagaMessageRegistry"/>): the state machine's
/// events, the endpoint's pipes and the decider's dispatch all come from that list.
/// </summary>
public sealed class When_the_saga_takes_its_messages_from_one_list
{
    [Fact]
    public void Should_have_one_state_machine_event_per_registered_message()
    {
        var machine = new PipelineStateMachine();

        var events = machine.Events.Select(e => e.Name).Where(n => !n.Contains('.', StringComparison.Ordinal) && n is not ("Initial" or "Final")).ToList();

        Assert.Equal(SagaMessageRegistry.All.Select(m => m.Type.Name).Order(StringComparer.Ordinal), events.Order(StringComparer.Ordinal));
        Assert.Equal(9, SagaMessageRegistry.All.Count);
        Assert.Single(SagaMessageRegistry.All, m => m.Starts);
        Assert.Equal(typeof(StartPipeline), SagaMessageRegistry.All.Single(m => m.Starts).Type);
    }

    [Fact]
    public void Should_take_every_command_and_report_the_contracts_send_to_the_saga()
    {
        // A new command or report in the contracts that the saga would not take fails here until it is registered.
        var toSaga = typeof(StartPipeline).Assembly.GetExportedTypes()
            .Where(t => t.Name.EndsWith("Pipeline", StringComparison.Ordinal) || t.Name.StartsWith("ReportStep", StringComparison.Ordinal) || t.Name.StartsWith("Submit", StringComparison.Ordinal))
            .Where(t => t.GetProperty("PipelineId") is not null && !typeof(PipelineEvent).IsAssignableFrom(t));

        Assert.All(toSaga, t => Assert.Contains(t, SagaMessageRegistry.All.Select(m => m.Type)));
        Assert.Contains(typeof(WakePipeline), SagaMessageRegistry.All.Select(m => m.Type));
    }

    [Fact]
    public void Should_refuse_a_message_the_saga_does_not_take()
    {
        var definition = new PipelineBuilder("one").Step("only", s => s.Worker("w")).Build();
        var registry = new PipelineRegistry([definition], []);
        var decider = new PipelineDecider(registry, TimeProvider.System, NullLogger<PipelineStateMachine>.Instance);
        var state = new PipelineState { CorrelationId = Guid.NewGuid() };
        decider.Decide(state, new StartPipeline { PipelineId = state.CorrelationId, Definition = "one" });

        var refused = Assert.Throws<ArgumentException>(() => decider.Decide(state, new ExecuteStep
        {
            PipelineId = state.CorrelationId,
            ExecutionId = Guid.NewGuid(),
            Definition = "one",
            StepName = "only",
            Worker = "w",
            Attempt = 1,
        }));

        Assert.Contains("ExecuteStep is not a message the pipeline saga takes", refused.Message, StringComparison.Ordinal);
    }
}
