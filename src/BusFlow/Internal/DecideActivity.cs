using BusFlow.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Applies one message to a pipeline through <see cref="PipelineEngine"/> and carries out what it
/// decided: publish the events in seq order, send step commands to worker queues, start or cancel
/// children, tell workers to stop, schedule the next wake-up and notify in-process observers.
/// </summary>
internal sealed partial class DecideActivity<TMessage>(
    PipelineRegistry registry,
    PipelineClock clock,
    TimeProvider time,
    IEnumerable<IPipelineObserver> observers,
    ILogger<PipelineStateMachine> logger) : IStateMachineActivity<PipelineState, TMessage>
    where TMessage : class
{
    public async Task Execute(BehaviorContext<PipelineState, TMessage> context, IBehavior<PipelineState, TMessage> next)
    {
        var decision = Decide(context.Saga, context.Message);
        await Deliver(context, decision);
        if (context.Saga.NextDeadline is { } deadline)
        {
            clock.Schedule(context.Saga.CorrelationId, deadline);
        }

        await Notify(decision, context.CancellationToken);
        await next.Execute(context);
    }

    private PipelineDecision Decide(PipelineState state, TMessage message)
    {
        var now = time.GetUtcNow();
        var name = message is StartPipeline start ? start.Definition : state.Definition;
        if (registry.Find(name) is not { } definition)
        {
            return UnknownDefinition(state, message, name, now);
        }

        var engine = new PipelineEngine(definition, state, now);
        switch (message)
        {
            case StartPipeline m:
                engine.Start(m);
                break;
            case CancelPipeline m:
                engine.Cancel(m.Reason);
                break;
            case SubmitStepAction m:
                engine.Answer(m.SuspendId, m.Payload);
                break;
            case ReportStepProgress m:
                engine.Progress(m);
                break;
            case ReportStepSucceeded m:
                engine.Succeeded(m.ExecutionId, m.Result);
                break;
            case ReportStepFaulted m:
                engine.Faulted(m.ExecutionId, m.Error, m.Retryable);
                break;
            case ReportStepSuspended m:
                engine.Suspended(m);
                break;
            case WakePipeline:
                engine.Wake();
                break;
            case ChildPipelineFinished m:
                engine.ChildFinished(m);
                break;
        }

        return engine.Decision;
    }

    /// <summary>A start naming no registered pipeline (or a saga instance whose definition is gone) fails with a clear error.</summary>
    private PipelineDecision UnknownDefinition(PipelineState state, TMessage message, string name, DateTimeOffset now)
    {
        LogUnknownDefinition(logger, name, state.CorrelationId);
        var decision = new PipelineDecision();
        if (state.Status != PipelineStatus.Running || message is not StartPipeline start)
        {
            return decision;
        }

        var error = new StepError("unknown_definition", $"No pipeline named '{name}' is registered with this saga.");
        state.Definition = name;
        state.Tags = start.Tags is null ? [] : new(start.Tags, StringComparer.Ordinal);
        state.ParentPipelineId = start.ParentPipelineId;
        state.StartedAt = now;
        state.FinishedAt = now;
        state.Status = PipelineStatus.Failed;
        state.Error = error;
        decision.Events.Add(new PipelineFailed
        {
            PipelineId = state.CorrelationId,
            Seq = ++state.LastSeq,
            Timestamp = now,
            Definition = name,
            Tags = state.Tags,
            ParentPipelineId = state.ParentPipelineId,
            Error = error,
        });
        if (state.ParentPipelineId is { } parent)
        {
            decision.ParentNotice = new ChildPipelineFinished { PipelineId = parent, ChildPipelineId = state.CorrelationId, Outcome = PipelineStatus.Failed, Error = error };
        }

        return decision;
    }

    private static async Task Deliver(BehaviorContext<PipelineState, TMessage> context, PipelineDecision decision)
    {
        foreach (var e in decision.Events)
        {
            await context.Publish(e, e.GetType());
        }

        foreach (var command in decision.StepCommands)
        {
            var endpoint = await context.GetSendEndpoint(QueueNames.WorkerAddress(command.Worker));
            await endpoint.Send(command);
        }

        foreach (var start in decision.ChildStarts)
        {
            await context.Publish(start);
        }

        foreach (var cancel in decision.ChildCancels)
        {
            await context.Publish(cancel);
        }

        foreach (var cancel in decision.StepCancels)
        {
            await context.Publish(cancel);
        }

        if (decision.ParentNotice is { } notice)
        {
            await context.Publish(notice);
        }
    }

    private async Task Notify(PipelineDecision decision, CancellationToken cancellationToken)
    {
        foreach (var observer in observers)
        {
            foreach (var e in decision.Events)
            {
                try
                {
                    await observer.OnEventAsync(e, cancellationToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogObserverFailed(logger, ex, observer.GetType().Name, e.EventType, e.PipelineId);
                }
            }
        }
    }

    public void Probe(ProbeContext context) => context.CreateScope("busflow-decide");

    public void Accept(StateMachineVisitor visitor) => visitor.Visit(this);

    public Task Faulted<TException>(BehaviorExceptionContext<PipelineState, TMessage, TException> context, IBehavior<PipelineState, TMessage> next)
        where TException : Exception => next.Faulted(context);

    [LoggerMessage(Level = LogLevel.Error, Message = "No pipeline definition named '{Definition}' is registered; pipeline {PipelineId} fails")]
    private static partial void LogUnknownDefinition(ILogger logger, string definition, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Observer {Observer} failed on {EventType} of pipeline {PipelineId}; the pipeline goes on")]
    private static partial void LogObserverFailed(ILogger logger, Exception exception, string observer, string eventType, Guid pipelineId);
}
