using BusFlow.Contracts;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// The worker's inbox and outbox: a step's report, the inbox row of the command it answers and the
/// effects the step enlisted commit in one transaction at the end of the attempt. A redelivered
/// command whose inbox row exists is not run again. The transaction is short (opened after the
/// step ran) so a long step never holds a database lock, which SQLite's single writer needs; on a
/// command's first delivery it is a group's (<see cref="GroupCommit"/>), shared with other reports
/// and transitions.
/// </summary>
internal sealed partial class StoreStepReportOutbox(
    IDbContextFactory<BusFlowDbContext> databases,
    OutboxSender sender,
    GroupCommit groups,
    TimeProvider time,
    ILogger<StoreStepReportOutbox> logger) : IStepReportOutbox
{
    /// <summary>
    /// Looks every command up, fresh or not: a copy can arrive with no redelivered flag or retry count
    /// (MassTransit's own send retry after a connection dropped once the broker had the message, or a
    /// direct send given up on that completes after the outbox sent the row again), and a step's
    /// effects outside <c>Enlist</c> must not run twice. Skipping fresh commands was tried and
    /// reverted (docs/performance.md).
    /// </summary>
    public async ValueTask<bool> AlreadyHandledAsync(ConsumeContext<ExecuteStep> context)
    {
        if (context.MessageId is not { } messageId)
        {
            return false;
        }

        var consumer = Consumer(context.Message);
        await using var db = await databases.CreateDbContextAsync(context.CancellationToken);
        return await db.Inbox.AnyAsync(i => i.MessageId == messageId && i.Consumer == consumer, context.CancellationToken);
    }

    public async Task ReportAsync(ConsumeContext<ExecuteStep> context, object report, IReadOnlyList<Func<StepCommitContext, Task>> effects)
    {
        var now = time.GetUtcNow();
        WorkerReportMember Member()
        {
            var row = OutboxRows.Create(report, null, context.Message.PipelineId, now);
            return new WorkerReportMember(context.Message.PipelineId, context.MessageId, Consumer(context.Message), row, effects, now, () => sender.SendCommittedAsync([(row, report)], CancellationToken.None));
        }

        // The first try joins a group with other pipelines' reports and transitions; a copy of the
        // command (its inbox row already taken) or any other failure fails that group, and then
        // this report is recorded alone, where a copy is recognised and dropped.
        if (context.GetRetryAttempt() == 0 && context.GetRedeliveryCount() == 0)
        {
            var grouped = Member();
            if (await groups.CommitAsync(grouped, context.CancellationToken))
            {
                await grouped.AfterCommitted;
                return;
            }
        }

        var alone = Member();
        try
        {
            await groups.CommitAloneAsync(alone, context.CancellationToken);
        }
        catch (DbUpdateException e) when (StoreProvider.IsUniqueViolation(e))
        {
            // Another delivery of the same command recorded its outcome first.
            LogDuplicate(logger, context.Message.StepName, context.Message.PipelineId);
            return;
        }

        await alone.AfterCommit();
    }

    /// <summary>The inbox name of a worker's handling of a step command.</summary>
    internal static string Consumer(ExecuteStep command) => "step:" + command.Worker;

    [LoggerMessage(Level = LogLevel.Information, Message = "Step {StepName} of pipeline {PipelineId}: a concurrent delivery already recorded the outcome; this one is dropped")]
    private static partial void LogDuplicate(ILogger logger, string stepName, Guid pipelineId);
}

/// <summary>A worker's report in a group: the command's inbox row, the report's outbox row and the step's enlisted effects.</summary>
internal sealed class WorkerReportMember(
    Guid pipelineId,
    Guid? messageId,
    string consumer,
    OutboxMessageRecord report,
    IReadOnlyList<Func<StepCommitContext, Task>> effects,
    DateTimeOffset now,
    Func<Task> send) : GroupMember(pipelineId)
{
    public override bool ReadsState => false;

    /// <summary>Sends the report.</summary>
    public override Func<Task> AfterCommit => send;

    public override Task AddToAsync(GroupTransaction group, CancellationToken cancellationToken)
    {
        if (messageId is { } id)
        {
            group.Db.Inbox.Add(new InboxRecord { MessageId = id, Consumer = consumer, ReceivedAt = now });
        }

        group.Db.Outbox.Add(report);
        group.Effects.AddRange(effects);
        return Task.CompletedTask;
    }
}
