using System.Collections.Concurrent;
using BusFlow.Contracts;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// The store's side of a co-located step (<see cref="IColocatedStepRunner"/>): the step's outcome is folded
/// into the pipeline's next transition, which commits in one transaction the new state, its events
/// and outbox rows, the inbox row of the step's command (so a copy of the command sent later is not
/// run again), the command's row marked delivered, and the effects the step enlisted. There is no
/// worker transaction and no report message. Folds of many pipelines share one transaction
/// (<see cref="GroupCommit"/>). While the step runs its command row stays undelivered:
/// if this process dies, the outbox delivery sends it on the ordinary path once it is older than
/// <see cref="BusFlowStoreOptions.DirectSendGrace"/>; while the process lives, it renews the row's age
/// so that no deliverer (this process's or another's) sends it meanwhile.
/// </summary>
internal sealed partial class ColocatedStepFold(
    IColocatedStepRunner steps,
    GroupCommit groups,
    IDbContextFactory<BusFlowDbContext> databases,
    IPipelineDecider decider,
    IServiceProvider services,
    BusFlowStoreOptions options,
    TimeProvider time,
    ILogger<ColocatedStepFold> logger) : BackgroundService
{
    /// <summary>Command rows of co-located steps not yet folded, with when they started or were last renewed.</summary>
    private readonly ConcurrentDictionary<long, DateTimeOffset> _held = new();

    private DecisionOutbox Outbox => field ??= services.GetRequiredService<DecisionOutbox>();

    /// <summary>True while the command row <paramref name="rowId"/> belongs to a step running here.</summary>
    public bool IsHeld(long rowId) => _held.ContainsKey(rowId);

    /// <summary>Runs a committed step command here when its worker has a free slot in this process; false leaves it to the bus.</summary>
    public bool TryRun(ExecuteStep command, OutboxMessageRecord row)
    {
        _held[row.Id] = time.GetUtcNow();
        if (steps.TryRun(
            command,
            (progress, cancellationToken) => CommitAsync(new Fold(this, command, row.Id, row.MessageId, progress, final: false, effects: []), cancellationToken),
            (outcome, cancellationToken) => FoldAsync(new Fold(this, command, row.Id, row.MessageId, outcome?.Report, final: true, outcome?.Effects ?? []), cancellationToken)))
        {
            return true;
        }

        _held.TryRemove(row.Id, out _);
        return false;
    }

    /// <summary>Commits the attempt's outcome, then lets go of its command row.</summary>
    private async Task FoldAsync(Fold fold, CancellationToken cancellationToken)
    {
        try
        {
            await CommitAsync(fold, cancellationToken);
        }
        finally
        {
            _held.TryRemove(fold.RowId, out _);
        }
    }

    /// <summary>
    /// Commits a progress report or the outcome in its pipeline's group (<see cref="GroupCommit"/>),
    /// or alone when the group failed, then waits for what follows its commit (sends, the next
    /// co-located steps, the clock, observers). Progress takes this path too, not the bus, so that it is
    /// recorded before the outcome: the outcome enters the same writer after it.
    /// </summary>
    private async Task CommitAsync(Fold fold, CancellationToken cancellationToken)
    {
        if (await groups.CommitAsync(fold, cancellationToken))
        {
            await fold.AfterCommitted;
            return;
        }

        await FoldAloneAsync(fold, cancellationToken);
        if (fold.Session is { } session)
        {
            await session.RunAfterCommitAsync();
        }
    }

    /// <summary>
    /// One fold in a group of its own, retried (reading the state again) until it applies: after a
    /// conflict (the pipeline changed since it was read, its next seq was taken) or while the database
    /// is away. Dropped when another delivery of the same command recorded its outcome first.
    /// </summary>
    private async Task FoldAloneAsync(Fold fold, CancellationToken cancellationToken)
    {
        fold.LookUpInbox = true;
        await Retry.UntilDoneAsync(
            stopping => groups.CommitAloneAsync(fold, stopping),
            BusFlowStoreExtensions.IsTransient,
            (ex, failures) =>
            {
                fold.Session = null;
                LogFoldRetried(logger, ex, fold.Command.StepName, fold.Command.PipelineId, failures);
            },
            time,
            cancellationToken);
    }

    /// <summary>
    /// Adds a fold to its group: the outcome decided on its pipeline's state (as the group read it;
    /// two of one pipeline one after the other), the events and outbox rows of that decision, the
    /// command's inbox row and delivered mark, and the step's effects.
    /// </summary>
    internal async Task AddToGroupAsync(Fold fold, GroupTransaction group, CancellationToken cancellationToken)
    {
        var db = group.Db;
        fold.Session = null;
        var consumer = StoreStepReportOutbox.Consumer(fold.Command);
        // Alone after a failed try: a copy of the command, sent on the ordinary path, may have
        // recorded the outcome first; then this one is dropped, as the worker would drop it.
        if (fold.Final && fold.LookUpInbox && await StoreQueries.For(db).Handled(db, fold.MessageId, consumer, cancellationToken))
        {
            LogDuplicate(logger, fold.Command.StepName, fold.Command.PipelineId);
            return;
        }

        var now = time.GetUtcNow();
        var session = new StoreSession();
        session.Begin(db);
        if (fold.Report is not null && group.States.GetValueOrDefault(fold.Command.PipelineId) is { Status: PipelineStatus.Running } state)
        {
            var decision = decider.Decide(state, fold.Report);
            state.CurrentState = state.Status.ToString();
            if (group.Versioned.Add(state))
            {
                state.Version++;
            }

            await Outbox.RecordAsync(session, state, decision, cancellationToken);
            group.BulkEvents.AddRange(session.TakeBulkEvents());
        }

        if (fold.Final)
        {
            db.Inbox.Add(new InboxRecord { MessageId = fold.MessageId, Consumer = consumer, ReceivedAt = now });
            var row = new OutboxMessageRecord { Id = fold.RowId };
            db.Outbox.Attach(row);
            row.DeliveredAt = now;
            group.Effects.AddRange(fold.Effects);
        }

        fold.Session = session;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await RenewHeldRowsAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

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

    [LoggerMessage(Level = LogLevel.Information, Message = "Co-located step {StepName} of pipeline {PipelineId}: a copy of its command sent on the ordinary path recorded the outcome first; this one is dropped")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing {Count} co-located command rows failed; the outbox delivery may send them on the ordinary path")]
    private static partial void LogRenewFailed(ILogger logger, Exception exception, int count);
}

/// <summary>A co-located step's progress report or outcome waiting to be folded into its pipeline's next transition.</summary>
internal sealed class Fold(ColocatedStepFold owner, ExecuteStep command, long rowId, Guid messageId, object? report, bool final, IReadOnlyList<Func<StepCommitContext, Task>> effects)
    : GroupMember(command.PipelineId)
{
    public ExecuteStep Command => command;

    /// <summary>The outbox row of <see cref="Command"/>.</summary>
    public long RowId => rowId;

    /// <summary>The MessageId the command is sent with on the ordinary path: its inbox key.</summary>
    public Guid MessageId => messageId;

    /// <summary>The report the saga decides on (a ReportStep* message); null when it stopped the attempt.</summary>
    public object? Report => report;

    /// <summary>The attempt's end: the command's inbox row and delivered mark and the effects commit with it.</summary>
    public bool Final => final;

    public IReadOnlyList<Func<StepCommitContext, Task>> Effects => effects;

    /// <summary>Tried alone after a failure: first look whether a copy recorded the outcome.</summary>
    public bool LookUpInbox { get; set; }

    /// <summary>What follows its commit (null when it was dropped as a copy's).</summary>
    public StoreSession? Session { get; set; }

    public override bool ReadsState => Report is not null;

    public override Func<Task> AfterCommit => () => Session?.RunAfterCommitAsync() ?? Task.CompletedTask;

    public override Task AddToAsync(GroupTransaction group, CancellationToken cancellationToken) => owner.AddToGroupAsync(this, group, cancellationToken);
}
