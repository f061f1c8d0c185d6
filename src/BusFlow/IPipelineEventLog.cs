namespace BusFlow;

/// <summary>
/// Reads the event log for subscribers that resume or fell behind: what a web edge replays from.
/// BusFlow.Store implements it over its events table; the edge depends on this, not on a store.
/// </summary>
public interface IPipelineEventLog
{
    /// <summary>
    /// One pipeline's positioned events after <paramref name="afterSeq"/> in seq order, as stored
    /// (routing columns and the recorded JSON as UTF-8, not deserialised).
    /// <see cref="StoredEventPage.Last"/> is the last seq read.
    /// </summary>
    Task<StoredEventPage> ReadPipelineStoredAsync(Guid pipelineId, long afterSeq, int limit, CancellationToken cancellationToken = default);

    /// <summary>
    /// The events after <paramref name="afterPosition"/> in position order, as stored, of the rows
    /// that pass <paramref name="filter"/> (answered by the store from its columns, not by reading
    /// payloads). <see cref="StoredEventPage.Last"/> is the last position read, filtered-out rows included.
    /// </summary>
    Task<StoredEventPage> ReadAllStoredAsync(long afterPosition, int limit, StoredEventFilter filter, CancellationToken cancellationToken = default);

    /// <summary>
    /// One pipeline's positioned events after <paramref name="afterSeq"/>, deserialised; rows this
    /// version cannot read are skipped but counted in <see cref="ReplayPage.Last"/>.
    /// </summary>
    Task<ReplayPage> ReadPipelinePageAsync(Guid pipelineId, long afterSeq, int limit, CancellationToken cancellationToken = default);

    /// <summary>Every pipeline's events after <paramref name="afterPosition"/> in position order, deserialised.</summary>
    Task<ReplayPage> ReadAllPageAsync(long afterPosition, int limit, CancellationToken cancellationToken = default);

    /// <summary>The highest position given so far (0 when none): a subscriber to every pipeline that resumes after it misses nothing later.</summary>
    Task<long> LastPositionAsync(CancellationToken cancellationToken = default);
}
