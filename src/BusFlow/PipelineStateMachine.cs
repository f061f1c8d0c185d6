using BusFlow.Internal;
using MassTransit;

namespace BusFlow;

/// <summary>
/// Runs one pipeline instance. Every message of <see cref="SagaMessageRegistry"/> is an event here,
/// handed to the pipeline's decisions (<see cref="DecideActivity{TMessage}"/>), which record events
/// with gapless seq and dispatch ready steps; the state then follows the pipeline's status.
/// </summary>
public sealed class PipelineStateMachine : MassTransitStateMachine<PipelineState>
{
    public PipelineStateMachine()
    {
        InstanceState(x => x.CurrentState);

        var events = new EventDeclarations(this);
        foreach (var message in SagaMessageRegistry.All)
        {
            message.Accept(events);
        }

        Initially([.. events.Initially]);
        During(Running, [.. events.Running]);

        // Late or repeated messages for a finished pipeline change nothing.
        During(Completed, Failed, Cancelled, [.. events.Finished]);
    }

    public State Running { get; private set; } = null!;

    public State Completed { get; private set; } = null!;

    public State Failed { get; private set; } = null!;

    public State Cancelled { get; private set; } = null!;

    private EventActivityBinder<PipelineState, T> Decide<T>(EventActivityBinder<PipelineState, T> binder)
        where T : class =>
        binder
            .Activity(x => x.OfType<DecideActivity<T>>())
            .IfElse(c => c.Saga.Status == PipelineStatus.Running,
                running => running.TransitionTo(Running),
                finished => finished.IfElse(c => c.Saga.Status == PipelineStatus.Completed,
                    completed => completed.TransitionTo(Completed),
                    other => other.IfElse(c => c.Saga.Status == PipelineStatus.Failed,
                        failed => failed.TransitionTo(Failed),
                        cancelled => cancelled.TransitionTo(Cancelled))));

    /// <summary>
    /// One event per saga message, named for its type and correlated by its pipeline id: the start
    /// creates the saga and is ignored once it runs; every other message is decided while the
    /// pipeline runs and discarded without a saga. Once the pipeline ended, all are ignored.
    /// </summary>
    private sealed class EventDeclarations(PipelineStateMachine machine) : ISagaMessageVisitor
    {
        public List<EventActivities<PipelineState>> Initially { get; } = [];

        public List<EventActivities<PipelineState>> Running { get; } = [];

        public List<EventActivities<PipelineState>> Finished { get; } = [];

        public void Visit<T>(SagaMessage<T> message)
            where T : class
        {
            var e = machine.Event<T>(typeof(T).Name, c =>
            {
                c.CorrelateById(x => message.PipelineId(x.Message));
                if (message.Starts)
                {
                    c.SetSagaFactory(x => new PipelineState { CorrelationId = message.PipelineId(x.Message) });
                }
                else
                {
                    c.OnMissingInstance(m => m.Discard());
                }
            });

            if (message.Starts)
            {
                Initially.Add(machine.Decide(machine.When(e)));
                Running.Add(machine.Ignore(e));
            }
            else
            {
                Running.Add(machine.Decide(machine.When(e)));
            }

            Finished.Add(machine.Ignore(e));
        }
    }
}
