namespace BusFlow;

/// <summary>
/// Idempotency keys: the same key of a scope maps to one pipeline (or one answer) for good, and a
/// hash of the first request tells a repeat from a conflicting reuse. BusFlow.Store implements it.
/// </summary>
public interface IIdempotencyKeys
{
    /// <summary>The claim of a key, if it was claimed.</summary>
    Task<IdempotencyClaim?> FindAsync(string scope, string key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Claims a key for a request: the first claim stores it; later claims (racing ones too) get the
    /// stored claim back, whose <see cref="IdempotencyClaim.RequestHash"/> tells a repeat from a conflict.
    /// </summary>
    Task<IdempotencyClaim> ClaimAsync(string scope, string key, string requestHash, Guid pipelineId, CancellationToken cancellationToken = default);
}

/// <summary>What a key was first claimed with.</summary>
public sealed record IdempotencyClaim(string RequestHash, Guid PipelineId);
