using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// Takes the events a store in this process has just committed, with their store-wide positions:
/// how a web edge beside the saga gets them without waiting for the broker's round trip. Called by
/// the store's writer right after each commit, in position order within the call; it must not
/// block or throw, and may drop what it cannot take, because the same events still go out on the
/// bus (a listener sees them twice and keeps them once, by position).
/// </summary>
public interface ICommittedEventsListener
{
    void OnCommitted(IReadOnlyList<PipelineEvent> events);
}
