using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;

namespace BusFlow;

/// <summary>
/// Runs one pipeline instance. Every message is handed to the pipeline's decisions
/// (<see cref="DecideActivity{TMessage}"/>), which record events with gapless seq and dispatch
/// ready steps; the state then follows the pipeline's status.
/// </summary>
public sealed class PipelineStateMachine : MassTransitStateMachine<PipelineState>
{
    public PipelineStateMachine()
    {
        InstanceState(x => x.CurrentState);

        Event(() => Start, e =>
        {
            e.CorrelateById(c => c.Message.PipelineId);
            e.SetSagaFactory(c => new PipelineState { CorrelationId = c.Message.PipelineId });
        });
        Event(() => Cancel, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Action, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Progress, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Succeeded, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Faulted, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Suspended, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => Wake, e => Correlate(e, c => c.Message.PipelineId));
        Event(() => ChildFinished, e => Correlate(e, c => c.Message.PipelineId));

        Initially(Decide(When(Start)));

        During(Running,
            Ignore(Start),
            Decide(When(Cancel)),
            Decide(When(Action)),
            Decide(When(Progress)),
            Decide(When(Succeeded)),
            Decide(When(Faulted)),
            Decide(When(Suspended)),
            Decide(When(Wake)),
            Decide(When(ChildFinished)));

        // Late or repeated messages for a finished pipeline change nothing.
        During(Completed, Failed, Cancelled,
            Ignore(Start),
            Ignore(Cancel),
            Ignore(Action),
            Ignore(Progress),
            Ignore(Succeeded),
            Ignore(Faulted),
            Ignore(Suspended),
            Ignore(Wake),
            Ignore(ChildFinished));
    }

    public State Running { get; private set; } = null!;

    public State Completed { get; private set; } = null!;

    public State Failed { get; private set; } = null!;

    public State Cancelled { get; private set; } = null!;

    public Event<StartPipeline> Start { get; private set; } = null!;

    public Event<CancelPipeline> Cancel { get; private set; } = null!;

    public Event<SubmitStepAction> Action { get; private set; } = null!;

    public Event<ReportStepProgress> Progress { get; private set; } = null!;

    public Event<ReportStepSucceeded> Succeeded { get; private set; } = null!;

    public Event<ReportStepFaulted> Faulted { get; private set; } = null!;

    public Event<ReportStepSuspended> Suspended { get; private set; } = null!;

    public Event<WakePipeline> Wake { get; private set; } = null!;

    public Event<ChildPipelineFinished> ChildFinished { get; private set; } = null!;

    private static void Correlate<T>(IEventCorrelationConfigurator<PipelineState, T> e, Func<ConsumeContext<T>, Guid> id)
        where T : class
    {
        e.CorrelateById(id);
        e.OnMissingInstance(m => m.Discard());
    }

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
}
