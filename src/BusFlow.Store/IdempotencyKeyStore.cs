using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store;

/// <summary>Idempotency keys in the store's <c>busflow_idempotency_keys</c> table, unique per scope and key.</summary>
public sealed partial class IdempotencyKeyStore(IDbContextFactory<BusFlowDbContext> databases, TimeProvider clock, ILogger<IdempotencyKeyStore> logger) : IIdempotencyKeys
{
    /// <summary>The claim of a key, if it was claimed.</summary>
    public async Task<IdempotencyClaim?> FindAsync(string scope, string key, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await ClaimOf(db, scope, key).FirstOrDefaultAsync(cancellationToken);
    }

    /// <summary>
    /// Claims a key for a request: the first claim stores it; later claims get the stored claim back,
    /// whose <see cref="IdempotencyClaim.RequestHash"/> tells a repeat from a conflict.
    /// </summary>
    public async Task<IdempotencyClaim> ClaimAsync(string scope, string key, string requestHash, Guid pipelineId, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);

        // A repeat (the usual case of a used key) finds its record without a failed insert, which
        // EF Core would log as an error; only two requests racing with one new key still meet the
        // unique index below.
        if (await ClaimOf(db, scope, key).FirstOrDefaultAsync(cancellationToken) is { } existing)
        {
            LogRepeat(logger, scope, existing.PipelineId);
            return existing;
        }

        db.IdempotencyKeys.Add(new IdempotencyKeyRecord { Scope = scope, Key = key, RequestHash = requestHash, PipelineId = pipelineId, CreatedAt = clock.GetUtcNow() });
        try
        {
            await db.SaveChangesAsync(cancellationToken);
            return new IdempotencyClaim(requestHash, pipelineId);
        }
        catch (DbUpdateException e) when (StoreProvider.IsUniqueViolation(e))
        {
            db.ChangeTracker.Clear();
            return await ClaimOf(db, scope, key).SingleAsync(cancellationToken);
        }
    }

    private static IQueryable<IdempotencyClaim> ClaimOf(BusFlowDbContext db, string scope, string key) =>
        db.IdempotencyKeys.AsNoTracking().Where(k => k.Scope == scope && k.Key == key).Select(k => new IdempotencyClaim(k.RequestHash, k.PipelineId));

    [LoggerMessage(Level = LogLevel.Debug, Message = "Idempotency key of scope {Scope} used again; answering with pipeline {PipelineId}")]
    private static partial void LogRepeat(ILogger logger, string scope, Guid pipelineId);
}
