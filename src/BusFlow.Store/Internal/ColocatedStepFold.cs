using System.Collections.Concurrent;
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
/// worker transaction and no report message. While the step runs its command row stays undelivered:
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
    /// <summary>Folds of one pipeline take turns (a DAG's parallel steps finishing together), so they do not conflict on its version.</summary>
    private readonly SemaphoreSlim[] _pipelineTurns = [.. Enumerable.Range(0, 64).Select(_ => new SemaphoreSlim(1, 1))];

    /// <summary>Command rows of co-located steps not yet folded, with when they started or were last renewed.</summary>
    private readonly ConcurrentDictionary<long, DateTimeOffset> _held = new();

    private DecisionOutbox Outbox => field ??= services.GetRequiredService<DecisionOutbox>();

    /// <summary>True while the command row <paramref name="rowId"/> belongs to a step running here.</summary>
    public bool IsHeld(long rowId) => _held.ContainsKey(rowId);

    /// <summary>Runs a committed step command here when its worker has a free slot in this process; false leaves it to the bus.</summary>
    public bool TryRun(ExecuteStep command, OutboxMessageRecord row)
    {
        _held[row.Id] = time.GetUtcNow();
        if (steps.TryRun(command, (outcome, cancellationToken) => FoldAsync(command, row.Id, row.MessageId, outcome, cancellationToken)))
        {
            return true;
        }

        _held.TryRemove(row.Id, out _);
        return false;
    }

    private async Task FoldAsync(ExecuteStep command, long rowId, Guid messageId, StepOutcome? outcome, CancellationToken cancellationToken)
    {
        try
        {
            StoreSession? committed;
            var turn = _pipelineTurns[(command.PipelineId.GetHashCode() & int.MaxValue) % _pipelineTurns.Length];
            await turn.WaitAsync(cancellationToken);
            try
            {
                committed = await FoldWithRetriesAsync(command, rowId, messageId, outcome, cancellationToken);
            }
            finally
            {
                turn.Release();
            }

            if (committed is not null)
            {
                await committed.CommittedAsync();
            }
        }
        finally
        {
            _held.TryRemove(rowId, out _);
        }
    }

    /// <summary>
    /// A conflict (the pipeline changed since it was read, or its next seq was taken) or a database
    /// that is away is retried, reading the state again, until it applies; null when another delivery
    /// of the same command recorded its outcome first.
    /// </summary>
    private async Task<StoreSession?> FoldWithRetriesAsync(ExecuteStep command, long rowId, Guid messageId, StepOutcome? outcome, CancellationToken cancellationToken)
    {
        for (var failures = 0; ; failures++)
        {
            try
            {
                return await FoldOnceAsync(command, rowId, messageId, outcome, lookUpInbox: failures > 0, cancellationToken);
            }
            catch (Exception ex) when (BusFlowStoreExtensions.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
            {
                LogFoldRetried(logger, ex, command.StepName, command.PipelineId, failures + 1);
                await Task.Delay(failures == 0 ? TimeSpan.Zero : EventLanes.Backoff(failures), time, cancellationToken);
            }
        }
    }

    private async Task<StoreSession?> FoldOnceAsync(ExecuteStep command, long rowId, Guid messageId, StepOutcome? outcome, bool lookUpInbox, CancellationToken cancellationToken)
    {
        var consumer = StoreStepReportOutbox.Consumer(command);
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            // After a unique-key conflict: a copy of the command, sent on the ordinary path, may have
            // recorded the outcome first; then this one is dropped, as the worker would drop it.
            if (lookUpInbox && await db.Inbox.AnyAsync(i => i.MessageId == messageId && i.Consumer == consumer, cancellationToken))
            {
                LogDuplicate(logger, command.StepName, command.PipelineId);
                return null;
            }

            var now = time.GetUtcNow();
            var session = new StoreSession();
            session.Begin(db);
            if (outcome is not null
                && await db.Pipelines.FirstOrDefaultAsync(p => p.CorrelationId == command.PipelineId, cancellationToken) is { Status: PipelineStatus.Running } state)
            {
                var decision = decider.Decide(state, outcome.Report);
                state.CurrentState = state.Status.ToString();
                state.Version++;
                await Outbox.RecordAsync(session, state, decision, cancellationToken);
            }

            db.Inbox.Add(new InboxRecord { MessageId = messageId, Consumer = consumer, ReceivedAt = now });
            var row = new OutboxMessageRecord { Id = rowId };
            db.Outbox.Attach(row);
            row.DeliveredAt = now;

            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            // A failure rolls back the whole transaction: no savepoint round trips around SaveChanges.
            db.Database.AutoSavepointsEnabled = false;
            await db.SaveChangesAsync(cancellationToken);
            var bulk = session.TakeBulkEvents();
            if (bulk.Count > 0)
            {
                await StoreProvider.InsertEventsAsync(db.Database.GetDbConnection(), transaction.GetDbTransaction(), options.Provider, bulk, cancellationToken);
            }

            foreach (var effect in outcome?.Effects ?? [])
            {
                await effect(new StepCommitContext(db.Database.GetDbConnection(), transaction.GetDbTransaction(), cancellationToken));
            }

            await transaction.CommitAsync(cancellationToken);
            return session;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>
    /// Renews the age of the command rows of steps running here for longer than a third of the grace
    /// period, so that the outbox delivery does not send them while they run.
    /// </summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
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

    public override void Dispose()
    {
        foreach (var turn in _pipelineTurns)
        {
            turn.Dispose();
        }

        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Folding co-located step {StepName} of pipeline {PipelineId} failed ({Failures} in a row); retried")]
    private static partial void LogFoldRetried(ILogger logger, Exception exception, string stepName, Guid pipelineId, int failures);

    [LoggerMessage(Level = LogLevel.Information, Message = "Co-located step {StepName} of pipeline {PipelineId}: a copy of its command sent on the ordinary path recorded the outcome first; this one is dropped")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing {Count} co-located command rows failed; the outbox delivery may send them on the ordinary path")]
    private static partial void LogRenewFailed(ILogger logger, Exception exception, int count);
}
