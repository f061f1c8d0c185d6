using System.Collections.Concurrent;
using System.Threading.Channels;
using BusFlow.Contracts;
using BusFlow.Internal;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// The store's side of a co-located step (<see cref="ColocatedSteps"/>): the step's outcome is folded
/// into the pipeline's next transition, which commits in one transaction the new state, its events
/// and outbox rows, the inbox row of the step's command (so a copy of the command sent later is not
/// run again), the command's row marked delivered, and the effects the step enlisted. There is no
/// worker transaction and no report message. Folds of many pipelines share one transaction (group
/// commit, as EventStoreDB's writer and RocksDB's log do it): a writer takes whatever folds wait,
/// commits them together, and only then lets each go on; a lone fold commits at once. While the step runs its command row stays undelivered:
/// if this process dies, the outbox delivery sends it on the ordinary path once it is older than
/// <see cref="BusFlowStoreOptions.DirectSendGrace"/>; while the process lives, it renews the row's age
/// so that no deliverer (this process's or another's) sends it meanwhile.
/// </summary>
internal sealed partial class ColocatedStepFold(
    ColocatedSteps steps,
    IDbContextFactory<BusFlowDbContext> databases,
    PipelineDecider decider,
    IServiceProvider services,
    BusFlowStoreOptions options,
    TimeProvider time,
    ILogger<ColocatedStepFold> logger) : BackgroundService
{
    /// <summary>The most folds one group commits together.</summary>
    internal const int MaxGroup = 64;

    /// <summary>
    /// Group writers, each committing whatever folds wait for it as one transaction; a pipeline always
    /// takes the same writer, so one pipeline's folds never race each other. SQLite has one writer
    /// (the file has one anyway), PostgreSQL a few, so that a group's round trips overlap another's.
    /// </summary>
    private readonly Channel<Fold>[] _writers = [.. Enumerable.Range(0, options.Provider == StoreProviderKind.Sqlite ? 1 : 4)
        .Select(_ => Channel.CreateUnbounded<Fold>(new UnboundedChannelOptions { SingleReader = true }))];

    /// <summary>Command rows of co-located steps not yet folded, with when they started or were last renewed.</summary>
    private readonly ConcurrentDictionary<long, DateTimeOffset> _held = new();

    private DecisionOutbox Outbox => field ??= services.GetRequiredService<DecisionOutbox>();

    /// <summary>True while the command row <paramref name="rowId"/> belongs to a step running here.</summary>
    public bool IsHeld(long rowId) => _held.ContainsKey(rowId);

    /// <summary>Runs a committed step command here when its worker has a free slot in this process; false leaves it to the bus.</summary>
    public bool TryRun(ExecuteStep command, OutboxMessageRecord row)
    {
        _held[row.Id] = time.GetUtcNow();
        if (steps.TryRun(command, (outcome, cancellationToken) => FoldAsync(new Fold(command, row.Id, row.MessageId, outcome), cancellationToken)))
        {
            return true;
        }

        _held.TryRemove(row.Id, out _);
        return false;
    }

    /// <summary>
    /// Hands the fold to its pipeline's group writer and waits for the group's commit; then runs what
    /// follows the commit (sends, the next co-located steps, the clock, observers) from here, so the
    /// writer goes on with the next group at once. A group that failed as a whole is retried one fold
    /// at a time, each by its own caller, so no fold fails or waits for another beyond that one try.
    /// </summary>
    private async Task FoldAsync(Fold fold, CancellationToken cancellationToken)
    {
        try
        {
            var writer = _writers[(fold.Command.PipelineId.GetHashCode() & int.MaxValue) % _writers.Length];
            await writer.Writer.WriteAsync(fold, cancellationToken);
            var committed = await fold.Committed.Task.WaitAsync(cancellationToken);
            if (!committed)
            {
                await FoldAloneAsync(fold, cancellationToken);
            }

            if (fold.Session is { } session)
            {
                await session.CommittedAsync();
            }
        }
        finally
        {
            _held.TryRemove(fold.RowId, out _);
        }
    }

    /// <summary>
    /// One fold in a group of its own, retried (reading the state again) until it applies: after a
    /// conflict (the pipeline changed since it was read, its next seq was taken) or while the database
    /// is away. Dropped when another delivery of the same command recorded its outcome first.
    /// </summary>
    private async Task FoldAloneAsync(Fold fold, CancellationToken cancellationToken)
    {
        for (var failures = 1; ; failures++)
        {
            try
            {
                await CommitAsync([fold], lookUpInbox: true, cancellationToken);
                return;
            }
            catch (Exception ex) when (BusFlowStoreExtensions.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
            {
                LogFoldRetried(logger, ex, fold.Command.StepName, fold.Command.PipelineId, failures);
                await Task.Delay(EventLanes.Backoff(failures), time, cancellationToken);
            }
        }
    }

    private async Task WriteGroupsAsync(ChannelReader<Fold> folds, CancellationToken stoppingToken)
    {
        var group = new List<Fold>(MaxGroup);
        while (await folds.WaitToReadAsync(stoppingToken))
        {
            // Whatever waits now, no more: a lone fold commits at once, and under load the folds that
            // arrive while a group commits form the next one.
            group.Clear();
            while (group.Count < MaxGroup && folds.TryRead(out var fold))
            {
                group.Add(fold);
            }

            try
            {
                await CommitAsync(group, lookUpInbox: false, stoppingToken);
                group.ForEach(f => f.Committed.TrySetResult(true));
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                LogGroupFailed(logger, ex, group.Count);
                group.ForEach(f => f.Committed.TrySetResult(false));
            }
        }
    }

    /// <summary>
    /// Commits the folds in one transaction: their pipelines read in one query, each outcome decided on
    /// its pipeline's state (two of one pipeline one after the other), then the states, their events
    /// and outbox rows, the commands' inbox rows and delivered marks saved together and the steps'
    /// effects run, before one commit. Sets each fold's <see cref="Fold.Session"/> for its after-commit work.
    /// </summary>
    private async Task CommitAsync(IReadOnlyList<Fold> group, bool lookUpInbox, CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            var ids = group.Where(f => f.Outcome is not null).Select(f => f.Command.PipelineId).Distinct().ToList();
            var states = ids.Count == 0
                ? []
                : await db.Pipelines.Where(p => ids.Contains(p.CorrelationId)).ToDictionaryAsync(p => p.CorrelationId, cancellationToken);
            var versioned = new HashSet<PipelineState>();
            var now = time.GetUtcNow();
            var bulk = new List<PipelineEventRecord>();
            foreach (var fold in group)
            {
                fold.Session = null;
                var consumer = StoreStepReportOutbox.Consumer(fold.Command);
                // Alone after a failed try: a copy of the command, sent on the ordinary path, may have
                // recorded the outcome first; then this one is dropped, as the worker would drop it.
                if (lookUpInbox && await db.Inbox.AnyAsync(i => i.MessageId == fold.MessageId && i.Consumer == consumer, cancellationToken))
                {
                    LogDuplicate(logger, fold.Command.StepName, fold.Command.PipelineId);
                    return;
                }

                var session = new StoreSession();
                session.Begin(db);
                if (fold.Outcome is not null && states.GetValueOrDefault(fold.Command.PipelineId) is { Status: PipelineStatus.Running } state)
                {
                    var decision = decider.Decide(state, fold.Outcome.Report);
                    state.CurrentState = state.Status.ToString();
                    if (versioned.Add(state))
                    {
                        state.Version++;
                    }

                    await Outbox.RecordAsync(session, state, decision, cancellationToken);
                    bulk.AddRange(session.TakeBulkEvents());
                }

                db.Inbox.Add(new InboxRecord { MessageId = fold.MessageId, Consumer = consumer, ReceivedAt = now });
                var row = new OutboxMessageRecord { Id = fold.RowId };
                db.Outbox.Attach(row);
                row.DeliveredAt = now;
                fold.Session = session;
            }

            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // A failure rolls back the whole transaction: no savepoint round trips around SaveChanges.
            db.Database.AutoSavepointsEnabled = false;
            await db.SaveChangesAsync(cancellationToken);
            if (bulk.Count > 0)
            {
                await StoreProvider.InsertEventsAsync(db.Database.GetDbConnection(), transaction.GetDbTransaction(), options.Provider, bulk, cancellationToken);
            }

            foreach (var effect in group.SelectMany(f => f.Outcome?.Effects ?? []))
            {
                await effect(new StepCommitContext(db.Database.GetDbConnection(), transaction.GetDbTransaction(), cancellationToken));
            }

            await transaction.CommitAsync(cancellationToken);
        }
        catch
        {
            foreach (var fold in group)
            {
                fold.Session = null;
            }

            throw;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await Task.WhenAll(_writers.Select(w => WriteGroupsAsync(w.Reader, stoppingToken)).Append(RenewHeldRowsAsync(stoppingToken)));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Folds still waiting are given up by their callers, which stop first; their commands stay in the outbox.
        }
    }

    /// <summary>
    /// Renews the age of the command rows of steps running here for longer than a third of the grace
    /// period, so that the outbox delivery does not send them while they run.
    /// </summary>
    private async Task RenewHeldRowsAsync(CancellationToken stoppingToken)
    {
        var every = options.DirectSendGrace / 3;
        using var timer = new PeriodicTimer(every, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                var now = time.GetUtcNow();
                var due = _held.Where(h => now - h.Value >= every).Select(h => h.Key).ToList();
                if (due.Count == 0)
                {
                    continue;
                }

                try
                {
                    await using var db = await databases.CreateDbContextAsync(stoppingToken);
                    await db.Outbox.Where(o => due.Contains(o.Id) && o.DeliveredAt == null)
                        .ExecuteUpdateAsync(s => s.SetProperty(o => o.CreatedAt, now), stoppingToken);
                    foreach (var id in due)
                    {
                        _held.TryUpdate(id, now, _held.GetValueOrDefault(id));
                    }
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    LogRenewFailed(logger, ex, due.Count);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Folding co-located step {StepName} of pipeline {PipelineId} failed ({Failures} in a row); retried")]
    private static partial void LogFoldRetried(ILogger logger, Exception exception, string stepName, Guid pipelineId, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "A group of {Count} co-located step outcomes failed to commit; each is retried alone")]
    private static partial void LogGroupFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Co-located step {StepName} of pipeline {PipelineId}: a copy of its command sent on the ordinary path recorded the outcome first; this one is dropped")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing {Count} co-located command rows failed; the outbox delivery may send them on the ordinary path")]
    private static partial void LogRenewFailed(ILogger logger, Exception exception, int count);
}

/// <summary>A co-located step's outcome waiting to be folded into its pipeline's next transition.</summary>
internal sealed class Fold(ExecuteStep command, long rowId, Guid messageId, StepOutcome? outcome)
{
    public ExecuteStep Command => command;

    /// <summary>The outbox row of <see cref="Command"/>.</summary>
    public long RowId => rowId;

    /// <summary>The MessageId the command is sent with on the ordinary path: its inbox key.</summary>
    public Guid MessageId => messageId;

    /// <summary>Null when the saga stopped the attempt: only its command is marked handled.</summary>
    public StepOutcome? Outcome => outcome;

    /// <summary>True once its group committed; false when the group failed and it must be tried alone.</summary>
    public TaskCompletionSource<bool> Committed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>What follows its commit (null when it was dropped as a copy's).</summary>
    public StoreSession? Session { get; set; }
}
