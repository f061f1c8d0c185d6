using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;

namespace BusFlow.Store.Internal;

/// <summary>
/// The hot path's reads, compiled once per model (a compiled query serves one model, and SQLite's
/// and PostgreSQL's differ; a process may use both): a LINQ query otherwise walks and parameterises
/// its expression tree and looks up its cache entry on every call, which in a profile of the
/// RabbitMQ + PostgreSQL throughput benchmark took about 4 % of the process's CPU.
/// </summary>
internal sealed class StoreQueries
{
    private static readonly ConditionalWeakTable<IModel, StoreQueries> PerModel = [];

    /// <summary>The queries compiled for <paramref name="db"/>'s model.</summary>
    public static StoreQueries For(BusFlowDbContext db) => PerModel.GetValue(db.Model, _ => new StoreQueries());

    /// <summary>A pipeline's state, tracked (a transition changes it).</summary>
    public Func<BusFlowDbContext, Guid, CancellationToken, Task<PipelineState?>> Pipeline { get; } =
        EF.CompileAsyncQuery((BusFlowDbContext db, Guid id, CancellationToken _) => db.Pipelines.FirstOrDefault(p => p.CorrelationId == id));

    /// <summary>A pipeline's state, not tracked.</summary>
    public Func<BusFlowDbContext, Guid, CancellationToken, Task<PipelineState?>> PipelineReadOnly { get; } =
        EF.CompileAsyncQuery((BusFlowDbContext db, Guid id, CancellationToken _) => db.Pipelines.AsNoTracking().FirstOrDefault(p => p.CorrelationId == id));

    /// <summary>Several pipelines' states, tracked.</summary>
    public Func<BusFlowDbContext, List<Guid>, IAsyncEnumerable<PipelineState>> Pipelines { get; } =
        EF.CompileAsyncQuery((BusFlowDbContext db, List<Guid> ids) => db.Pipelines.Where(p => ids.Contains(p.CorrelationId)));

    /// <summary>True when a consumer already handled the message (its inbox row exists).</summary>
    public Func<BusFlowDbContext, Guid, string, CancellationToken, Task<bool>> Handled { get; } =
        EF.CompileAsyncQuery((BusFlowDbContext db, Guid messageId, string consumer, CancellationToken _) => db.Inbox.Any(i => i.MessageId == messageId && i.Consumer == consumer));
}
