using System.Data.Common;
using BusFlow.Store;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Host.Samples;

/// <summary>
/// The <c>ledger</c> sample's effect: each step of a pipeline writes one row to
/// <c>busflow_sample_ledger</c> in the store's database, enlisted with the step's outcome
/// (<see cref="StepContext.Enlist"/>), so that the row commits if and only if the outcome does: a
/// step that runs again after a crash leaves one row per recorded completion, never two.
/// </summary>
public static class SampleLedger
{
    public const string Table = "busflow_sample_ledger";

    /// <summary>The <c>ledger-entry</c> worker: enlists its row, then succeeds.</summary>
    public static Task<StepResult> Entry(StepContext context)
    {
        var amount = context.GetPipelineInput<LedgerInput>()?.Amount ?? 1;
        var signed = context.StepName == "debit" ? -amount : amount;
        context.Enlist(commit => RecordAsync(commit, context.PipelineId, context.StepName, context.Attempt, signed));
        return Task.FromResult(StepResult.Success(new { entry = context.StepName, amount = signed }));
    }

    private static async Task RecordAsync(StepCommitContext commit, Guid pipelineId, string step, int attempt, int amount)
    {
        var connection = commit.Connection ?? throw new InvalidOperationException("The ledger sample writes to the store's database: it needs BusFlow.Store.");
        await using var command = connection.CreateCommand();
        command.Transaction = commit.Transaction;
        command.CommandText = $"INSERT INTO {Table} (pipeline_id, step, attempt, amount) VALUES (@pipeline, @step, @attempt, @amount)";
        Add(command, "pipeline", pipelineId.ToString());
        Add(command, "step", step);
        Add(command, "attempt", attempt);
        Add(command, "amount", amount);
        await command.ExecuteNonQueryAsync(commit.CancellationToken);
    }

    private static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = "@" + name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    /// <summary>Creates the ledger table when it is missing (a process running the sample workers does, at start).</summary>
    public static async Task EnsureTableAsync(IDbContextFactory<BusFlowDbContext> databases, CancellationToken cancellationToken)
    {
        const string Columns = "(pipeline_id VARCHAR(64) NOT NULL, step VARCHAR(64) NOT NULL, attempt INTEGER NOT NULL, amount INTEGER NOT NULL)";
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var db = await databases.CreateDbContextAsync(cancellationToken);
                // SQL Server has no CREATE TABLE IF NOT EXISTS.
                var sql = db.Database.ProviderName == "Microsoft.EntityFrameworkCore.SqlServer"
                    ? $"IF OBJECT_ID(N'{Table}') IS NULL CREATE TABLE {Table} {Columns}"
                    : $"CREATE TABLE IF NOT EXISTS {Table} {Columns}";
                await db.Database.ExecuteSqlRawAsync(sql, cancellationToken);
                return;
            }
            catch (DbException) when (attempt < 3)
            {
                // Two worker processes starting at once on PostgreSQL: one's CREATE TABLE IF NOT EXISTS
                // can fail on the catalog's unique index while the other's commits; the next try sees the table.
                await Task.Delay(200, cancellationToken);
            }
        }
    }

    private sealed record LedgerInput(int Amount = 1);
}

/// <summary>Creates the <c>ledger</c> sample's table at start in a process that runs the sample workers with a store (without one the sample's steps fail, saying so).</summary>
public sealed class SampleLedgerTable(IServiceProvider services) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) =>
        services.GetService<IDbContextFactory<BusFlowDbContext>>() is { } databases ? SampleLedger.EnsureTableAsync(databases, cancellationToken) : Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
