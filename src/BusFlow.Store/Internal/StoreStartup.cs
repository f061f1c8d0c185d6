using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Runs before the bus starts: checks the database is reachable (failing with a message naming the
/// setting), applies migrations when configured, and re-arms the clock for every running pipeline's
/// pending deadline, since the clock's memory does not survive a restart.
/// </summary>
internal sealed partial class StoreStartup(
    IDbContextFactory<BusFlowDbContext> databases,
    BusFlowStoreOptions options,
    IPipelineCommitFollowUp followUp,
    TimeProvider time,
    IServiceProvider services,
    ILogger<StoreStartup> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        try
        {
            if (options.ShouldMigrate)
            {
                // A migration lock that outlives its process (on SQLite, EF Core's lock is a row that a
                // process killed while holding it never deletes) would make MigrateAsync wait forever:
                // then take it only when there is something to apply, so a crash during one start does
                // not hang every later start. (Without a history table there is; reading it would fail.)
                var history = db.GetService<IHistoryRepository>();
                if (history.LockReleaseBehavior != LockReleaseBehavior.Explicit
                    || !await history.ExistsAsync(cancellationToken)
                    || (await db.Database.GetPendingMigrationsAsync(cancellationToken)).Any())
                {
                    // However long it takes: a migration cut off by the start watchdog would leave its lock.
                    using var migrating = services.GetService<IStartWatchdog>()?.Hold();
                    await db.Database.MigrateAsync(cancellationToken);
                }
            }
            else if (!await db.Database.CanConnectAsync(cancellationToken))
            {
                throw new InvalidOperationException("the database refused the connection");
            }
        }
        catch (Exception ex) when (ex is DbException or InvalidOperationException or TimeoutException)
        {
            throw new InvalidOperationException(
                $"BusFlow cannot use its store ({options.Provider}) at '{BusFlowStoreOptions.Section}:ConnectionString' = '{Redact(options.ConnectionString)}': {ex.Message}", ex);
        }

        // A counter behind the positions already given (an older version counted on the outbox
        // lease's row after the migration moved the counter) would make every commit collide with
        // them on the unique index, for good: it starts past the highest position given.
        await db.Leases.Where(l => l.Name == OutboxDelivery.PositionCounter && l.LastPosition < (db.Events.Max(e => e.Position) ?? 0))
            .ExecuteUpdateAsync(s => s.SetProperty(l => l.LastPosition, l => db.Events.Max(e => e.Position) ?? 0), cancellationToken);

        var pending = await db.Pipelines.AsNoTracking()
            .Where(p => p.Status == PipelineStatus.Running && p.NextDeadline != null)
            .Select(p => new { p.CorrelationId, p.NextDeadline })
            .ToListAsync(cancellationToken);
        foreach (var p in pending)
        {
            followUp.RearmDeadline(p.CorrelationId, p.NextDeadline!.Value);
        }

        var requeued = 0;
        if (services.GetService<BusFlowTransportInfo>() is { LosesMessagesOnRestart: true })
        {
            requeued = await InFlightRecovery.RequeueAsync(db, options.InboxWindow, time.GetUtcNow(), cancellationToken);
        }

        LogStarted(logger, options.Provider, pending.Count, requeued);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    internal static string Redact(string connectionString)
    {
        var builder = new DbConnectionStringBuilder { ConnectionString = connectionString };
        foreach (var key in builder.Keys.Cast<string>().Where(k => k.Contains("password", StringComparison.OrdinalIgnoreCase) || k.Equals("pwd", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            builder[key] = "***";
        }

        return builder.ConnectionString;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "BusFlow store ready on {Provider}; {Count} pipeline deadlines re-armed, {Requeued} in-flight messages of the in-memory transport queued again")]
    private static partial void LogStarted(ILogger logger, StoreProviderKind provider, int count, int requeued);
}
