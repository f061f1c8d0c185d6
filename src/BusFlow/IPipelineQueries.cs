namespace BusFlow;

/// <summary>
/// Reads pipelines for status, lists and answers: the read side of the saga's state, which the
/// saga alone writes. BusFlow.Store implements it; the web edge depends on this, not on a store.
/// </summary>
public interface IPipelineQueries
{
    /// <summary>One pipeline, whole (its input and its map steps' items included); null when there is none.</summary>
    Task<PipelineState?> FindAsync(Guid pipelineId, CancellationToken cancellationToken = default);

    /// <summary>Whether the pipeline is recorded: a start's check, which needs neither its state nor its items.</summary>
    Task<bool> ExistsAsync(Guid pipelineId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The most recently started pipelines, newest first, of one tenant or of all when
    /// <paramref name="tenant"/> is null; without their inputs and without map items.
    /// </summary>
    Task<IReadOnlyList<PipelineState>> ListRecentAsync(int take, string? tenant, CancellationToken cancellationToken);

    /// <summary>How many pipelines run now on each definition version (of one tenant, or of all when <paramref name="tenant"/> is null).</summary>
    Task<IReadOnlyDictionary<(string Definition, string Version), long>> RunningVersionsAsync(string? tenant, CancellationToken cancellationToken);

    /// <summary>A suspension of a pipeline, open or closed; null when the pipeline has none by that id.</summary>
    Task<PipelineSuspension?> FindSuspensionAsync(Guid pipelineId, Guid suspendId, CancellationToken cancellationToken = default);
}

/// <summary>
/// A step's wait for an outside answer, as a query sees it: which step (and map item) waits, since
/// when, until when, and when it was answered, expired or cancelled (null while open).
/// </summary>
public sealed record PipelineSuspension(Guid SuspendId, Guid PipelineId, string StepName, int? ItemIndex, DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, DateTimeOffset? ClosedAt);
