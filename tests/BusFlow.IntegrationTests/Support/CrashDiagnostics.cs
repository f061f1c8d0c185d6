using System.Data.Common;
using System.Diagnostics;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.IntegrationTests.Support;

/// <summary>
/// What the crash target logs so a stalled run explains itself: database commands and transactions
/// that waited long or failed (with the provider's error), and, every few seconds, the thread pool
/// and how much database work was done.
/// </summary>
internal sealed partial class CrashDiagnostics(ILogger<CrashDiagnostics> logger) : BackgroundService
{
    // Statements and commits here take milliseconds: one that took longer waited for a lock (or a CPU).
    private static readonly TimeSpan Waited = TimeSpan.FromMilliseconds(140);
    private static readonly TimeSpan Slow = TimeSpan.FromSeconds(1);
    private long _commands;
    private long _slowCommands;
    private long _commandWaitMs;
    private long _begins;
    private long _slowBegins;
    private long _beginWaitMs;
    private long _commits;
    private long _slowCommits;
    private long _commitWaitMs;
    private long _failed;

    public Interceptor CreateInterceptor() => new(this);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(5));
        var clock = Stopwatch.StartNew();
        var last = clock.Elapsed;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                // A late tick means the thread pool could not run this timer's continuation in time.
                var late = clock.Elapsed - last - TimeSpan.FromSeconds(5);
                last = clock.Elapsed;
                var begins = Take(ref _begins, ref _slowBegins, ref _beginWaitMs, "begins");
                var commits = Take(ref _commits, ref _slowCommits, ref _commitWaitMs, "commits");
                var commands = Take(ref _commands, ref _slowCommands, ref _commandWaitMs, "commands");
                var failed = Interlocked.Exchange(ref _failed, 0);
                LogStats(logger, ThreadPool.ThreadCount, ThreadPool.PendingWorkItemCount, (long)late.TotalMilliseconds, begins, commits, commands, failed);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static string Take(ref long count, ref long waited, ref long waitedMs, string what) =>
        $"{Interlocked.Exchange(ref count, 0)} {what} ({Interlocked.Exchange(ref waited, 0)} waited {Interlocked.Exchange(ref waitedMs, 0)} ms)";

    private void Executed(DbCommand command, TimeSpan duration)
    {
        Interlocked.Increment(ref _commands);
        if (duration >= Waited)
        {
            Interlocked.Increment(ref _slowCommands);
            Interlocked.Add(ref _commandWaitMs, (long)duration.TotalMilliseconds);
        }

        if (duration >= Slow)
        {
            LogSlow(logger, (long)duration.TotalMilliseconds, Summary(command.CommandText));
        }
    }

    private void Failed(DbCommand command, Exception exception, TimeSpan duration)
    {
        Interlocked.Increment(ref _failed);
        var code = exception is Microsoft.Data.Sqlite.SqliteException e ? $"SQLite {e.SqliteErrorCode}/{e.SqliteExtendedErrorCode}" : exception.GetType().Name;
        LogFailed(logger, (long)duration.TotalMilliseconds, code, exception.Message, Summary(command.CommandText));
    }

    private void TransactionStarted(TimeSpan duration)
    {
        Interlocked.Increment(ref _begins);
        if (duration >= Waited)
        {
            Interlocked.Increment(ref _slowBegins);
            Interlocked.Add(ref _beginWaitMs, (long)duration.TotalMilliseconds);
        }

        if (duration >= Slow)
        {
            LogSlowBegin(logger, (long)duration.TotalMilliseconds);
        }
    }

    private void TransactionCommitted(TimeSpan duration)
    {
        Interlocked.Increment(ref _commits);
        if (duration >= Waited)
        {
            Interlocked.Increment(ref _slowCommits);
            Interlocked.Add(ref _commitWaitMs, (long)duration.TotalMilliseconds);
        }

        if (duration >= Slow)
        {
            LogSlowCommit(logger, (long)duration.TotalMilliseconds);
        }
    }

    private void TransactionFailed(string action, Exception exception, TimeSpan duration)
    {
        Interlocked.Increment(ref _failed);
        var code = exception is Microsoft.Data.Sqlite.SqliteException e ? $"SQLite {e.SqliteErrorCode}/{e.SqliteExtendedErrorCode}" : exception.GetType().Name;
        LogFailed(logger, (long)duration.TotalMilliseconds, code, exception.Message, "transaction " + action);
    }

    private static string Summary(string sql)
    {
        var line = sql.ReplaceLineEndings(" ");
        return line.Length > 100 ? line[..100] : line;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "diagnostics: {Threads} pool threads, {Pending} queued work items, timer {LateMs} ms late; last 5 s: {Begins}, {Commits}, {Commands}, {Failed} failed")]
    private static partial void LogStats(ILogger logger, int threads, long pending, long lateMs, string begins, string commits, string commands, long failed);

    [LoggerMessage(Level = LogLevel.Warning, Message = "slow commit: {Ms} ms")]
    private static partial void LogSlowCommit(ILogger logger, long ms);

    [LoggerMessage(Level = LogLevel.Warning, Message = "slow db command: {Ms} ms: {Sql}")]
    private static partial void LogSlow(ILogger logger, long ms, string sql);

    [LoggerMessage(Level = LogLevel.Warning, Message = "failed db command after {Ms} ms: {Code}: {Message}: {Sql}")]
    private static partial void LogFailed(ILogger logger, long ms, string code, string message, string sql);

    [LoggerMessage(Level = LogLevel.Warning, Message = "slow transaction start: {Ms} ms")]
    private static partial void LogSlowBegin(ILogger logger, long ms);

    internal sealed class Interceptor(CrashDiagnostics diagnostics) : DbCommandInterceptor, IDbTransactionInterceptor
    {
        public override DbDataReader ReaderExecuted(DbCommand command, CommandExecutedEventData eventData, DbDataReader result)
        {
            diagnostics.Executed(command, eventData.Duration);
            return result;
        }

        public override ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result, CancellationToken cancellationToken = default)
        {
            diagnostics.Executed(command, eventData.Duration);
            return ValueTask.FromResult(result);
        }

        public override int NonQueryExecuted(DbCommand command, CommandExecutedEventData eventData, int result)
        {
            diagnostics.Executed(command, eventData.Duration);
            return result;
        }

        public override ValueTask<int> NonQueryExecutedAsync(DbCommand command, CommandExecutedEventData eventData, int result, CancellationToken cancellationToken = default)
        {
            diagnostics.Executed(command, eventData.Duration);
            return ValueTask.FromResult(result);
        }

        public override object? ScalarExecuted(DbCommand command, CommandExecutedEventData eventData, object? result)
        {
            diagnostics.Executed(command, eventData.Duration);
            return result;
        }

        public override ValueTask<object?> ScalarExecutedAsync(DbCommand command, CommandExecutedEventData eventData, object? result, CancellationToken cancellationToken = default)
        {
            diagnostics.Executed(command, eventData.Duration);
            return ValueTask.FromResult(result);
        }

        public override void CommandFailed(DbCommand command, CommandErrorEventData eventData) => diagnostics.Failed(command, eventData.Exception, eventData.Duration);

        public override Task CommandFailedAsync(DbCommand command, CommandErrorEventData eventData, CancellationToken cancellationToken = default)
        {
            diagnostics.Failed(command, eventData.Exception, eventData.Duration);
            return Task.CompletedTask;
        }

        public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => diagnostics.TransactionCommitted(eventData.Duration);

        public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            diagnostics.TransactionCommitted(eventData.Duration);
            return Task.CompletedTask;
        }

        public InterceptionResult<DbTransaction> TransactionStarting(DbConnection connection, TransactionStartingEventData eventData, InterceptionResult<DbTransaction> result) => result;

        public DbTransaction TransactionStarted(DbConnection connection, TransactionEndEventData eventData, DbTransaction result)
        {
            diagnostics.TransactionStarted(eventData.Duration);
            return result;
        }

        public ValueTask<InterceptionResult<DbTransaction>> TransactionStartingAsync(DbConnection connection, TransactionStartingEventData eventData, InterceptionResult<DbTransaction> result, CancellationToken cancellationToken = default) => ValueTask.FromResult(result);

        public ValueTask<DbTransaction> TransactionStartedAsync(DbConnection connection, TransactionEndEventData eventData, DbTransaction result, CancellationToken cancellationToken = default)
        {
            diagnostics.TransactionStarted(eventData.Duration);
            return ValueTask.FromResult(result);
        }

        public void TransactionFailed(DbTransaction transaction, TransactionErrorEventData eventData) => diagnostics.TransactionFailed(eventData.Action, eventData.Exception, eventData.Duration);

        public Task TransactionFailedAsync(DbTransaction transaction, TransactionErrorEventData eventData, CancellationToken cancellationToken = default)
        {
            diagnostics.TransactionFailed(eventData.Action, eventData.Exception, eventData.Duration);
            return Task.CompletedTask;
        }
    }
}
