using BusFlow.Store.Internal;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store;

/// <summary>Read access to pipeline state for status queries (the saga alone writes it).</summary>
public sealed class PipelineStore(IDbContextFactory<BusFlowDbContext> databases) : IPipelineQueries
{
    public async Task<PipelineState?> FindAsync(Guid pipelineId, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        // One snapshot for the pipeline row and its map's item rows, so that a write (or retention)
        // between the two reads cannot show a tree and items that do not belong together.
        await db.Database.OpenConnectionAsync(cancellationToken);
        await using System.Data.Common.DbTransaction snapshot = db.Database.GetDbConnection() is Microsoft.Data.Sqlite.SqliteConnection sqlite
            ? sqlite.BeginTransaction(deferred: true) // a read: SQLite's write lock is not taken
            : await db.Database.GetDbConnection().BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        await db.Database.UseTransactionAsync(snapshot, cancellationToken);
        return await WorkItemRows.FilledAsync(db, await StoreQueries.For(db).PipelineReadOnly(db, pipelineId, cancellationToken), cancellationToken);
    }

    /// <summary>Whether the pipeline row exists: one indexed look-up, no snapshot, no items.</summary>
    public async Task<bool> ExistsAsync(Guid pipelineId, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await db.Pipelines.AnyAsync(p => p.CorrelationId == pipelineId, cancellationToken);
    }

    /// <summary>The most recently started pipelines, newest first, whole (inputs included).</summary>
    public async Task<IReadOnlyList<PipelineState>> ListRecentAsync(int take, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var states = await db.Pipelines.AsNoTracking().OrderByDescending(p => p.StartedAt).Take(take).ToListAsync(cancellationToken);
        await WorkItemRows.FillAsync(db, states, cancellationToken);
        return states;
    }

    /// <summary>
    /// The most recently started pipelines, newest first, of one tenant (in SQL, on an index) or of
    /// all when <paramref name="tenant"/> is null; without their inputs, which a list never shows and
    /// which may be large, and without a map step's items (its step tree says how far it is).
    /// </summary>
    public async Task<IReadOnlyList<PipelineState>> ListRecentAsync(int take, string? tenant, CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var pipelines = db.Pipelines.AsNoTracking();
        if (tenant is not null)
        {
            pipelines = pipelines.Where(p => p.Tenant == tenant);
        }

        return await pipelines.OrderByDescending(p => p.StartedAt).Take(take).Select(p => new PipelineState
        {
            CorrelationId = p.CorrelationId,
            CurrentState = p.CurrentState,
            Version = p.Version,
            Status = p.Status,
            Definition = p.Definition,
            DefinitionVersion = p.DefinitionVersion,
            TraceParent = p.TraceParent,
            Tags = p.Tags,
            Tenant = p.Tenant,
            ParentPipelineId = p.ParentPipelineId,
            ParentStepName = p.ParentStepName,
            LastSeq = p.LastSeq,
            StartedAt = p.StartedAt,
            FinishedAt = p.FinishedAt,
            NextDeadline = p.NextDeadline,
            Error = p.Error,
            FailedStep = p.FailedStep,
            Steps = p.Steps,
        }).ToListAsync(cancellationToken);
    }

    /// <summary>
    /// How many pipelines run now on each definition version (of one tenant, or of all when
    /// <paramref name="tenant"/> is null), counted on the (status, definition, version) index.
    /// </summary>
    public async Task<IReadOnlyDictionary<(string Definition, string Version), long>> RunningVersionsAsync(string? tenant, CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var running = db.Pipelines.AsNoTracking().Where(p => p.Status == PipelineStatus.Running);
        if (tenant is not null)
        {
            running = running.Where(p => p.Tenant == tenant);
        }

        var rows = await running.GroupBy(p => new { p.Definition, p.DefinitionVersion })
            .Select(g => new { g.Key.Definition, g.Key.DefinitionVersion, Count = g.LongCount() })
            .ToListAsync(cancellationToken);
        return rows.ToDictionary(r => (r.Definition, r.DefinitionVersion), r => r.Count);
    }

    /// <summary>A suspension of a pipeline, open or closed; null when there is none by that id.</summary>
    public async Task<PipelineSuspension?> FindSuspensionAsync(Guid pipelineId, Guid suspendId, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await db.Suspensions.AsNoTracking()
            .Where(s => s.SuspendId == suspendId && s.PipelineId == pipelineId)
            .Select(s => new PipelineSuspension(s.SuspendId, s.PipelineId, s.StepName, s.ItemIndex, s.CreatedAt, s.ExpiresAt, s.ClosedAt))
            .FirstOrDefaultAsync(cancellationToken);
    }
}
