using BusFlow.Contracts;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Applies one saga message to a pipeline's state through <see cref="PipelineEngine"/> and returns
/// what it decided. Used by the state machine (<see cref="DecideActivity{TMessage}"/>) and by a
/// store that folds a co-located step's report into a transition without a bus message.
/// </summary>
internal sealed partial class PipelineDecider(PipelineRegistry registry, TimeProvider time, ILogger<PipelineStateMachine> logger)
{
    public PipelineDecision Decide(PipelineState state, object message)
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
    private PipelineDecision UnknownDefinition(PipelineState state, object message, string name, DateTimeOffset now)
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
        state.Tenant = state.Tags.GetValueOrDefault(PipelineTags.Tenant);
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

    [LoggerMessage(Level = LogLevel.Error, Message = "No pipeline definition named '{Definition}' is registered; pipeline {PipelineId} fails")]
    private static partial void LogUnknownDefinition(ILogger logger, string definition, Guid pipelineId);
}
