using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store;

/// <summary>Read access to pipeline state for status queries (the saga alone writes it).</summary>
public sealed class PipelineStore(IDbContextFactory<BusFlowDbContext> databases)
{
    public async Task<PipelineState?> FindAsync(Guid pipelineId, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await db.Pipelines.AsNoTracking().FirstOrDefaultAsync(p => p.CorrelationId == pipelineId, cancellationToken);
    }
}
