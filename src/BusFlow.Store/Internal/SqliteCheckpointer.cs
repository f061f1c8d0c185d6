using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store.Internal;

/// <summary>
/// Checkpoints a SQLite store's write-ahead log from a background task every
/// <see cref="Interval"/>, so that the pages transitions changed are copied back into the file (and
/// flushed) off their path: left to SQLite, the transaction whose commit crosses the log's checkpoint
/// size does it before its commit returns, a stall of tens of milliseconds on this kind of machine.
/// The checkpoint is PASSIVE: it copies what no reader still needs and never waits for, or blocks,
/// readers and writers. Connections keep SQLite's own checkpoint at a larger size
/// (<see cref="StoreProvider"/>) as a safety net. Registered for SQLite stores only.
/// </summary>
internal sealed partial class SqliteCheckpointer(
    IDbContextFactory<BusFlowDbContext> databases,
    TimeProvider time,
    ILogger<SqliteCheckpointer> logger) : BackgroundService
{
    internal static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failures = 0;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(Interval, time, stoppingToken);
                try
                {
                    await CheckpointAsync(stoppingToken);
                    failures = 0;
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // The file is busy or away; SQLite's own checkpoint still runs, and so does the next try.
                    if (failures++ == 0)
                    {
                        LogCheckpointFailed(logger, ex);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task CheckpointAsync(CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        await db.Database.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Checkpointing the SQLite store's write-ahead log failed; SQLite checkpoints it itself meanwhile")]
    private static partial void LogCheckpointFailed(ILogger logger, Exception exception);
}
