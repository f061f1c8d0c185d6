using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Internal;

/// <summary>
/// The state of each running pipeline as this process last committed it, so that its next
/// transition here does not read back the row it just wrote (<see cref="BusFlowStoreOptions.CachePipelineStates"/>).
/// A transition gets a copy, attached to its context as unchanged: its write is checked on the
/// copy's <see cref="PipelineState.Version"/> like any other, so when another process changed the
/// pipeline in between the write fails as a conflict, every pipeline of the failed group is
/// forgotten here, and the retry reads the store. Finished pipelines are dropped; past
/// <see cref="Capacity"/> the cache starts over rather than grow.
/// </summary>
internal sealed class PipelineStateCache(BusFlowStoreOptions options)
{
    /// <summary>The most pipelines remembered; a process with more running at once reads the rest.</summary>
    public const int Capacity = 20_000;

    private readonly ConcurrentDictionary<Guid, PipelineState> _states = new();

    public int Count => _states.Count;

    /// <summary>
    /// The pipeline's state for a transition in <paramref name="db"/>: the instance the context
    /// already tracks, else a copy of the remembered state attached as unchanged; null when neither.
    /// </summary>
    public PipelineState? Attach(BusFlowDbContext db, Guid pipelineId)
    {
        if (db.Pipelines.Local.FindEntry(pipelineId) is { } tracked)
        {
            return tracked.Entity;
        }

        if (!options.CachePipelineStates || !_states.TryGetValue(pipelineId, out var remembered))
        {
            return null;
        }

        var copy = Copy(remembered);
        db.Pipelines.Attach(copy);
        return copy;
    }

    /// <summary>
    /// The pipelines <paramref name="db"/> is about to write, taken before the write (the group's
    /// plain writes detach what they wrote), for <see cref="Committed"/>.
    /// </summary>
    public List<(PipelineState State, bool Deleted)> Writing(BusFlowDbContext db) =>
        options.CachePipelineStates
            ? [.. db.ChangeTracker.Entries<PipelineState>().Where(e => e.State is EntityState.Added or EntityState.Modified or EntityState.Deleted).Select(e => (e.Entity, e.State == EntityState.Deleted))]
            : [];

    /// <summary>Remembers the pipelines a transaction wrote, once it committed.</summary>
    public void Committed(List<(PipelineState State, bool Deleted)> written)
    {
        foreach (var (state, deleted) in written)
        {
            if (deleted || state.Status != PipelineStatus.Running)
            {
                _states.TryRemove(state.CorrelationId, out _);
                continue;
            }

            if (_states.Count >= Capacity)
            {
                _states.Clear();
            }

            _states[state.CorrelationId] = Copy(state);
        }
    }

    /// <summary>Forgets pipelines whose remembered state may no longer be what the store holds.</summary>
    public void Forget(IEnumerable<Guid> pipelineIds)
    {
        foreach (var id in pipelineIds)
        {
            _states.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// A copy deep enough that a transition changing it leaves the remembered one as it was: the
    /// lists and the tags are new, JSON values and errors are immutable and shared, and so are a
    /// map's items, which a transition never changes in place (it changes a copy, and the store
    /// writes the items that are not the ones it stored).
    /// </summary>
    private static PipelineState Copy(PipelineState s) => new()
    {
        CorrelationId = s.CorrelationId,
        CurrentState = s.CurrentState,
        Version = s.Version,
        Status = s.Status,
        Definition = s.Definition,
        DefinitionVersion = s.DefinitionVersion,
        TraceParent = s.TraceParent,
        Input = s.Input,
        Tags = new Dictionary<string, string>(s.Tags),
        Tenant = s.Tenant,
        ParentPipelineId = s.ParentPipelineId,
        ParentStepName = s.ParentStepName,
        LastSeq = s.LastSeq,
        StartedAt = s.StartedAt,
        FinishedAt = s.FinishedAt,
        NextDeadline = s.NextDeadline,
        Error = s.Error,
        FailedStep = s.FailedStep,
        Steps = [.. s.Steps.Select(step => new StepRun
        {
            Name = step.Name,
            Status = step.Status,
            StartedAt = step.StartedAt,
            FinishedAt = step.FinishedAt,
            Result = step.Result,
            Error = step.Error,
            Items = step.Items switch
            {
                // A map's items are shared, not copied: a transition copies the ones it changes (PipelineEngine.Own).
                StoredItems { Loaded: false } unloaded => StoredItems.Unloaded(unloaded.Expected),
                var items when WorkItemRows.InRows(items) => StoredItems.Of([.. items]),
                var items => [.. items.Select(item => item.Copy())],
            },
        })],
    };
}
