using BusFlow.Contracts;
using Microsoft.Extensions.Logging;

namespace BusFlow.Internal;

/// <summary>
/// Applies one saga message to a pipeline's state through <see cref="PipelineEngine"/> and returns
/// what it decided. Used by the state machine (<see cref="DecideActivity{TMessage}"/>) and by a
/// store that folds a co-located step's report into a transition without a bus message.
/// </summary>
internal sealed partial class PipelineDecider(PipelineRegistry registry, TimeProvider time, ILogger<PipelineStateMachine> logger) : IPipelineDecider
{
    /// <summary>
    /// Decides <paramref name="message"/> on the definition version the pipeline started on (a start
    /// on the current version of its name). Without that version here it throws
    /// <see cref="DefinitionUnavailableException"/>, leaving the pipeline to a process that has it,
    /// unless <paramref name="waitedLongEnough"/>: then the pipeline fails (<c>unknown_version</c>, or
    /// <c>unknown_definition</c> for a start).
    /// </summary>
    public PipelineDecision Decide(PipelineState state, object message, bool waitedLongEnough = false)
    {
        using var activity = PipelineActivities.Transition(state, message, (message as StartPipeline)?.TraceParent ?? state.TraceParent);
        var decision = DecideOnce(state, message, waitedLongEnough);
        if (PipelineActivities.TraceParentOf(activity) is { } traceParent)
        {
            // Later transitions join the trace the pipeline's first traced one began or continued;
            // the events, step commands and child starts name this one, so that their delivery,
            // push and run join it whichever process and path carries them.
            state.TraceParent ??= traceParent;
            for (var i = 0; i < decision.ChildStarts.Count; i++)
            {
                decision.ChildStarts[i] = decision.ChildStarts[i] with { TraceParent = traceParent };
            }

            for (var i = 0; i < decision.Events.Count; i++)
            {
                decision.Events[i] = decision.Events[i] with { TraceParent = traceParent };
            }

            for (var i = 0; i < decision.StepCommands.Count; i++)
            {
                decision.StepCommands[i] = decision.StepCommands[i] with { TraceParent = traceParent };
            }
        }

        return decision;
    }

    PipelineDecision IPipelineDecider.Decide(PipelineState state, object message) => Decide(state, message);

    private PipelineDecision DecideOnce(PipelineState state, object message, bool waitedLongEnough)
    {
        var now = time.GetUtcNow();
        var start = message as StartPipeline;
        var name = start?.Definition ?? state.Definition;
        if ((start is null ? registry.Deciding(state) : registry.Find(name)) is not { } definition)
        {
            if (message is CancelPipeline cancel && state.Status == PipelineStatus.Running)
            {
                // A cancel needs no definition: what runs is in the state.
                return PipelineEngine.CancelWithoutDefinition(state, cancel.Reason, now);
            }

            if (!waitedLongEnough)
            {
                throw start is null
                    ? new DefinitionUnavailableException(state.CorrelationId, name, state.DefinitionVersion, registry.Find(name, state.DefinitionVersion) is not null && state.DefinitionVersion.Length > 0)
                    : new DefinitionUnavailableException(start.PipelineId, name, null);
            }

            return start is null ? UnknownVersion(state, now) : UnknownDefinition(state, start, now);
        }

        if (start is null && state.DefinitionVersion.Length == 0)
        {
            // Started before versions were recorded: from now on it is decided on this one.
            state.DefinitionVersion = definition.Version;
        }

        var engine = new PipelineEngine(definition, state, now);
        SagaMessageRegistry.Of(message).Apply(engine, message);

        return engine.Decision;
    }

    /// <summary>A start naming no registered pipeline fails with a clear error.</summary>
    private PipelineDecision UnknownDefinition(PipelineState state, StartPipeline start, DateTimeOffset now)
    {
        var name = start.Definition;
        LogUnknownDefinition(logger, name, state.CorrelationId);
        if (state.Status != PipelineStatus.Running)
        {
            return new PipelineDecision();
        }

        var error = new StepError("unknown_definition", $"No pipeline named '{name}' is registered with this saga.");
        state.Definition = name;
        state.Tags = start.Tags is null ? [] : new(start.Tags, StringComparer.Ordinal);
        state.Tenant = state.Tags.GetValueOrDefault(PipelineTags.Tenant);
        state.ParentPipelineId = start.ParentPipelineId;
        state.StartedAt = now;
        // The engine records the failure (its event's envelope, the parent's notice), as for any other.
        return PipelineEngine.FailWithoutDefinition(state, error, now);
    }

    /// <summary>
    /// A running pipeline whose definition version no process had within the wait fails: its steps
    /// still running are told to stop, as for any failure, and a parent hears of it.
    /// </summary>
    private PipelineDecision UnknownVersion(PipelineState state, DateTimeOffset now)
    {
        LogUnknownVersion(logger, state.Definition, state.DefinitionVersion, state.CorrelationId);
        var error = new StepError("unknown_version", $"No process has the definition '{state.Definition}' in the version '{state.DefinitionVersion}' this pipeline started on; register that version (Draining()) beside the new one until its pipelines end.");
        return PipelineEngine.FailWithoutDefinition(state, error, now);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "No process had the definition '{Definition}' in version '{Version}' within the wait; pipeline {PipelineId} fails with unknown_version")]
    private static partial void LogUnknownVersion(ILogger logger, string definition, string version, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Error, Message = "No pipeline definition named '{Definition}' is registered; pipeline {PipelineId} fails")]
    private static partial void LogUnknownDefinition(ILogger logger, string definition, Guid pipelineId);
}
