using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Group commit, as EventStoreDB's writer and RocksDB's log do it: saga transitions and co-located
/// steps' outcomes of many pipelines share one database transaction. A writer takes whatever waits,
/// commits it as one group, and only then lets each member go on (and its message be acknowledged);
/// a lone member commits at once, and under load the members that arrive while a group commits form
/// the next one. SQLite has one writer (the file has one anyway), PostgreSQL a few, so that one
/// group's round trips overlap another's; a pipeline always takes the same writer, so two grouped
/// members of one pipeline commit in the order they came, and what follows their commits (sends,
/// the clock, observers) runs in that order too. When a group fails as a whole, every member
/// learns so and is tried again alone by its caller, so no member fails or waits for another
/// beyond that one try; once the writers stop, members are told to commit alone at once.
/// </summary>
internal sealed partial class GroupCommit(
    IDbContextFactory<BusFlowDbContext> databases,
    StoreWriteGate writes,
    OutboxSignal signal,
    PipelineStateCache states,
    IEnumerable<ICommittedEventsListener> listeners,
    BusFlowStoreOptions options,
    StoreMetrics metrics,
    ILogger<GroupCommit> logger) : BackgroundService
{
    private readonly ICommittedEventsListener[] _listeners = [.. listeners];

    /// <summary>The most members one group commits together.</summary>
    internal const int MaxGroup = 64;

    private readonly Channel<GroupMember>[] _writers = [.. Enumerable.Range(0, options.Dialect.SingleWriter ? 1 : 4)
        .Select(_ => Channel.CreateUnbounded<GroupMember>(new UnboundedChannelOptions { SingleReader = true }))];

    /// <summary>Per pipeline, the after-commit work last chained (see <see cref="GroupMember.AfterCommitted"/>).</summary>
    private readonly ConcurrentDictionary<Guid, Task> _afterCommitTails = new();

    private volatile bool _stopped;

    /// <summary>The states this process committed last, for transitions outside a group's read too.</summary>
    public PipelineStateCache States => states;

    /// <summary>
    /// Commits <paramref name="member"/> in the next group of its pipeline's writer: true once
    /// committed (then await <see cref="GroupMember.AfterCommitted"/>), false when the group failed
    /// or the writers stopped, and the member must commit alone.
    /// </summary>
    public async Task<bool> CommitAsync(GroupMember member, CancellationToken cancellationToken)
    {
        var writer = _writers[(member.PipelineId.GetHashCode() & int.MaxValue) % _writers.Length];
        if (_stopped)
        {
            return false;
        }

        await writer.Writer.WriteAsync(member, cancellationToken);
        if (_stopped)
        {
            // Stopped meanwhile: nobody reads the channel any more.
            Release(writer.Reader);
        }

        return await member.Committed.Task.WaitAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _stopped = true;
        await base.StopAsync(cancellationToken);
        foreach (var writer in _writers)
        {
            Release(writer.Reader);
        }
    }

    /// <summary>Tells every member still queued to commit alone.</summary>
    private static void Release(ChannelReader<GroupMember> members)
    {
        while (members.TryRead(out var member))
        {
            member.Committed.TrySetResult(false);
        }
    }

    /// <summary>Commits <paramref name="member"/> in a group of its own, now; throws what the commit threw.</summary>
    public Task CommitAloneAsync(GroupMember member, CancellationToken cancellationToken) => CommitAsync([member], cancellationToken);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.WhenAll(_writers.Select(w => WriteGroupsAsync(w.Reader, stoppingToken)));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Members still waiting are given up by their callers, which stop first.
        }
    }

    private async Task WriteGroupsAsync(ChannelReader<GroupMember> members, CancellationToken stoppingToken)
    {
        var group = new List<GroupMember>(MaxGroup);
        while (await members.WaitToReadAsync(stoppingToken))
        {
            group.Clear();
            while (group.Count < MaxGroup && members.TryRead(out var member))
            {
                group.Add(member);
            }

            try
            {
                await CommitAsync(group, stoppingToken);
            }
            catch (Exception ex)
            {
                if (!stoppingToken.IsCancellationRequested)
                {
                    LogGroupFailed(logger, ex, group.Count);
                }

                // Cut off by the stop or failed: each member commits alone (a commit that did
                // happen is found by the members' inbox rows and version checks).
                group.ForEach(m => m.Committed.TrySetResult(false));
                continue;
            }

            foreach (var member in group)
            {
                member.AfterCommitted = ChainAfterCommit(member);
                member.Committed.TrySetResult(true);
            }
        }
    }

    /// <summary>
    /// One transaction for the whole group: the state machine's transitions first (their rows moved
    /// over from their own contexts), then the members that decide on a pipeline's state, read for all
    /// of them in one query (a pipeline a transition of this group changed is found as that transition
    /// left it); then one SaveChanges, the steps' enlisted effects, the multi-row event inserts with
    /// their positions and one commit, after which the event rows go to the delivery.
    /// </summary>
    private async Task CommitAsync(List<GroupMember> members, CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        // Changes are detected once, before the write: left on, EF Core compared every tracked row of
        // the group again at each look-up of a state (DbSet.Local) and each listing of the tracker,
        // which made a group's cost grow with the square of its size (17 % of the process's CPU in
        // memory, on the one writer every member waits for).
        db.ChangeTracker.AutoDetectChangesEnabled = false;
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            var group = new GroupTransaction(db);
            foreach (var member in members.Where(m => !m.ReadsState))
            {
                await AddAsync(member, group, cancellationToken);
            }

            // A pipeline this process committed last is not read back (PipelineStateCache); the rest are read at once.
            var ids = new List<Guid>();
            foreach (var id in members.Where(m => m.ReadsState).Select(m => m.PipelineId).Distinct())
            {
                if (states.Attach(db, id) is { } known)
                {
                    group.States[id] = known;
                }
                else
                {
                    ids.Add(id);
                }
            }

            if (ids.Count > 0)
            {
                var loaded = new List<PipelineState>(ids.Count);
                await foreach (var state in StoreQueries.For(db).Pipelines(db, ids).WithCancellation(cancellationToken))
                {
                    group.States[state.CorrelationId] = state;
                    loaded.Add(state);
                }

                await WorkItemRows.FillAsync(db, loaded, cancellationToken);
            }

            foreach (var member in members.Where(m => m.ReadsState))
            {
                await AddAsync(member, group, cancellationToken);
            }

            using var turn = await writes.EnterAsync(cancellationToken);
            var writing = Stopwatch.GetTimestamp();
            // Positions are given in list order, so one pipeline's event rows must be inserted in seq
            // order across members: every member hands them over for the multi-row insert, sorted here.
            var events = group.BulkEvents;
            events.Sort((a, b) => a.PipelineId == b.PipelineId ? a.Seq.CompareTo(b.Seq) : a.PipelineId.CompareTo(b.PipelineId));
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // A failure rolls back the whole transaction: no savepoint round trips around SaveChanges.
            db.Database.AutoSavepointsEnabled = false;
            // The tracked rows first (GroupRows, then SaveChanges for any other kind): a concurrent
            // transition of a pipeline fails there, on its Version, before its rows could collide
            // on (PipelineId, Seq).
            db.ChangeTracker.DetectChanges();
            var written = states.Writing(db);
            WorkItemRows.Track(db);
            await GroupRows.WriteAsync(db, transaction.GetDbTransaction(), options.Dialect, cancellationToken);
            if (db.ChangeTracker.HasChanges())
            {
                await db.SaveChangesAsync(cancellationToken);
            }

            foreach (var effect in group.Effects)
            {
                await effect(new StepCommitContext(db.Database.GetDbConnection(), transaction.GetDbTransaction(), cancellationToken));
            }

            // The event rows last: on PostgreSQL, taking their positions locks the position counter
            // until this commit, and every other group's positions wait for it.
            await options.Dialect.InsertEventsAsync(db.Database.GetDbConnection(), transaction.GetDbTransaction(), events, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            metrics.Committed(writing, members.Count);
            states.Committed(written);
            signal.Committed(events);
            HandToListeners(events);
        }
        catch
        {
            // A version conflict may mean a remembered state is stale; whatever failed, read them again.
            states.Forget(members.Select(m => m.PipelineId));
            throw;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>Adds a member under its own flow's activity (restored when this returns).</summary>
    private static async Task AddAsync(GroupMember member, GroupTransaction group, CancellationToken cancellationToken)
    {
        Activity.Current = member.Activity;
        await member.AddToAsync(group, cancellationToken);
    }

    /// <summary>
    /// Hands a committed group's events to this process's listeners (an edge beside the saga), each
    /// kept on its row so that the delivery publishes the same object.
    /// </summary>
    private void HandToListeners(List<PipelineEventRecord> rows)
    {
        if (_listeners.Length == 0 || rows.Count == 0)
        {
            return;
        }

        // Never throws: the group committed, and its members must learn so.
        var events = new List<PipelineEvent>(rows.Count);
        try
        {
            foreach (var row in rows)
            {
                if (PipelineStateMap.Positioned(row) is { } e)
                {
                    row.Decided = e;
                    events.Add(e);
                }
            }
        }
        catch (Exception ex)
        {
            LogListenerFailed(logger, ex, nameof(PipelineStateMap.Positioned));
            return;
        }

        foreach (var listener in _listeners)
        {
            try
            {
                listener.OnCommitted(events);
            }
            catch (Exception ex)
            {
                LogListenerFailed(logger, ex, listener.GetType().Name);
            }
        }
    }

    /// <summary>
    /// Runs the member's after-commit work once the work of its pipeline's previous grouped commit
    /// ran: called by the pipeline's one writer, in commit order.
    /// </summary>
    private Task ChainAfterCommit(GroupMember member)
    {
        var previous = _afterCommitTails.GetValueOrDefault(member.PipelineId) ?? Task.CompletedTask;
        var next = RunAfterAsync(previous, member.AfterCommit, member.Activity);
        _afterCommitTails[member.PipelineId] = next;
        _ = next.ContinueWith(_ => _afterCommitTails.TryRemove(KeyValuePair.Create(member.PipelineId, next)), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return next;

        static async Task RunAfterAsync(Task previous, Func<Task> work, Activity? activity)
        {
            // The previous member's failure is its own caller's to see.
            await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ForceYielding);
            Activity.Current = activity;
            await work();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The committed-events listener {Listener} failed; its events still go out on the bus")]
    private static partial void LogListenerFailed(ILogger logger, Exception exception, string listener);

    [LoggerMessage(Level = LogLevel.Information, Message = "A group of {Count} transitions failed to commit; each is tried again alone")]
    private static partial void LogGroupFailed(ILogger logger, Exception exception, int count);
}

/// <summary>One pipeline's writes that join a group transaction.</summary>
internal abstract class GroupMember(Guid pipelineId)
{
    public Guid PipelineId => pipelineId;

    /// <summary>
    /// The activity of the flow that made the member (a consume, a step run): the group's writer
    /// adds the member and runs its after-commit work under it, so that what they decide and send
    /// stays in that flow's trace.
    /// </summary>
    public Activity? Activity { get; } = Activity.Current;

    /// <summary>True once its group committed; false when the group failed and it must be tried alone.</summary>
    public TaskCompletionSource<bool> Committed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>What follows its commit (sends, the clock, observers); run in commit order per pipeline.</summary>
    public abstract Func<Task> AfterCommit { get; }

    /// <summary>Once grouped and committed: its <see cref="AfterCommit"/> work, chained after that of its pipeline's previous grouped commit.</summary>
    public Task AfterCommitted { get; set; } = Task.CompletedTask;

    /// <summary>Decides on its pipeline's state as the group reads it (<see cref="GroupTransaction.States"/>).</summary>
    public abstract bool ReadsState { get; }

    /// <summary>Adds its rows, event rows for a multi-row insert and effects to the group.</summary>
    public abstract Task AddToAsync(GroupTransaction group, CancellationToken cancellationToken);
}

/// <summary>What a group collects before its one commit.</summary>
internal sealed class GroupTransaction(BusFlowDbContext db)
{
    public BusFlowDbContext Db => db;

    /// <summary>The pipelines the members that read state decide on, tracked by <see cref="Db"/>.</summary>
    public Dictionary<Guid, PipelineState> States { get; set; } = [];

    /// <summary>Pipelines whose <see cref="PipelineState.Version"/> this group already raised (once per commit).</summary>
    public HashSet<PipelineState> Versioned { get; } = [];

    public List<PipelineEventRecord> BulkEvents { get; } = [];

    public List<Func<StepCommitContext, Task>> Effects { get; } = [];
}
