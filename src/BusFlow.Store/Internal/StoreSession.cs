namespace BusFlow.Store.Internal;

/// <summary>
/// The database context of the saga message being handled (scoped), shared by the saga repository
/// and the decision recorder so saga state, event rows and outbox rows save in one transaction,
/// and the work to do once that transaction committed.
/// </summary>
internal sealed class StoreSession
{
    private readonly List<Func<Task>> _afterCommit = [];
    private readonly List<PipelineEventRecord> _bulkEvents = [];
    private BusFlowDbContext? _db;
    private Task? _chained;

    public BusFlowDbContext Db => _db ?? throw new InvalidOperationException("No saga transaction is open: the BusFlow store's saga repository opens one per message.");

    public void Begin(BusFlowDbContext db)
    {
        _db = db;
        _chained = null;
        _afterCommit.Clear();
        _bulkEvents.Clear();
    }

    public void AfterCommit(Func<Task> action) => _afterCommit.Add(action);

    /// <summary>Event rows the saga repository inserts with one multi-row statement in the transition's transaction, instead of through EF Core.</summary>
    public void AddBulkEvents(IEnumerable<PipelineEventRecord> rows) => _bulkEvents.AddRange(rows);

    /// <summary>The rows of <see cref="AddBulkEvents"/> so far, handed over once.</summary>
    public List<PipelineEventRecord> TakeBulkEvents()
    {
        var rows = _bulkEvents.ToList();
        _bulkEvents.Clear();
        return rows;
    }

    /// <summary>
    /// The transition committed in a group, which runs its after-commit work in its pipeline's
    /// commit order: <see cref="CommittedAsync"/> then waits for that instead of running it.
    /// </summary>
    public void AfterCommitChained(Task chained) => _chained = chained;

    /// <summary>Runs the work to do now that the transaction committed (or waits for it, when a group runs it).</summary>
    public Task CommittedAsync() => _chained ?? RunAfterCommitAsync();

    /// <summary>Runs the work to do after the commit, once.</summary>
    public async Task RunAfterCommitAsync()
    {
        var actions = _afterCommit.ToList();
        _afterCommit.Clear();
        _db = null;
        foreach (var action in actions)
        {
            await action();
        }
    }

    public void End()
    {
        _chained = null;
        _afterCommit.Clear();
        _bulkEvents.Clear();
        _db = null;
    }
}
