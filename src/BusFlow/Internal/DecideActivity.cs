using BusFlow.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Applies one message to a pipeline through <see cref="PipelineEngine"/> and hands what it decided
/// to the <see cref="IPipelineDecisionRecorder"/>, which makes it durable and delivers it.
/// </summary>
internal sealed partial class DecideActivity<TMessage>(
    PipelineRegistry registry,
    IPipelineDecisionRecorder recorder,
    TimeProvider time,
    ILogger<PipelineStateMachine> logger) : IStateMachineActivity<PipelineState, TMessage>
    where TMessage : class
{
    public async Task Execute(BehaviorContext<PipelineState, TMessage> context, IBehavior<PipelineState, TMessage> next)
    {
        var decision = Decide(context.Saga, context.Message);
        await recorder.RecordAsync(context, context.Saga, decision);
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

    public void Probe(ProbeContext context) => context.CreateScope("busflow-decide");

    public void Accept(StateMachineVisitor visitor) => visitor.Visit(this);

    public Task Faulted<TException>(BehaviorExceptionContext<PipelineState, TMessage, TException> context, IBehavior<PipelineState, TMessage> next)
        where TException : Exception => next.Faulted(context);

    [LoggerMessage(Level = LogLevel.Error, Message = "No pipeline definition named '{Definition}' is registered; pipeline {PipelineId} fails")]
    private static partial void LogUnknownDefinition(ILogger logger, string definition, Guid pipelineId);

}
