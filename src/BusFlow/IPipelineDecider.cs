namespace BusFlow;

/// <summary>
/// The engine's decision for one saga message, for a store that makes a transition without the
/// state machine (BusFlow.Store folds a co-located step's report into the pipeline's next
/// transition this way). The state machine decides through the same implementation, so both paths
/// give the same events, commands and state.
/// </summary>
public interface IPipelineDecider
{
    /// <summary>
    /// Applies <paramref name="message"/> (a saga message of BusFlow.Contracts) to
    /// <paramref name="state"/>, changing it, and returns what the transition decided. Throws
    /// <see cref="DefinitionUnavailableException"/> when this process lacks the definition version the
    /// pipeline started on: the caller leaves the message to a process that has it.
    /// </summary>
    PipelineDecision Decide(PipelineState state, object message);
}
