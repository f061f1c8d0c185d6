using BusFlow.Store.Dialects;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.SqlServer.TransactSql.ScriptDom;

namespace BusFlow.Store.Tests.Dialects;

/// <summary>
/// SQL Server checked as far as a machine without one allows: its model and schema, its migrations,
/// and the syntax of every statement its dialect sends, parsed by Microsoft's T-SQL parser. The
/// store specs that run against a live server (<see cref="AllStoresAttribute"/>) report SQL Server's
/// cases as not run unless BUSFLOW_TEST_SQLSERVER names one.
/// </summary>
public sealed class When_the_store_runs_on_SQL_Server_without_a_server
{
    /// <summary>A context for SQL Server; nothing here opens its connection.</summary>
    private static BusFlowDbContext Context(StoreProviderKind provider = StoreProviderKind.SqlServer)
    {
        var options = new DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, provider, provider switch
        {
            StoreProviderKind.SqlServer => "Server=127.0.0.1,1;Database=busflow;TrustServerCertificate=true;Connect Timeout=1",
            StoreProviderKind.Postgres => "Host=127.0.0.1;Port=1;Username=postgres;Database=busflow",
            _ => "Data Source=unused.db",
        });
        return new BusFlowDbContext(options.Options);
    }

    /// <summary>The parser's complaints about <paramref name="sql"/>, as SQL Server reads it (QUOTED_IDENTIFIER on, SqlClient's default).</summary>
    private static IList<ParseError> Parse(string sql)
    {
        using var reader = new StringReader(sql);
        new TSql160Parser(initialQuotedIdentifiers: true).Parse(reader, out var errors);
        return errors;
    }

    private static string Describe(IList<ParseError> errors, string sql) =>
        string.Join("; ", errors.Select(e => $"line {e.Line}, column {e.Column}: {e.Message}")) + "\n" + sql;

    [Fact]
    public void Should_build_the_same_tables_columns_keys_and_indexes_as_the_other_stores()
    {
        using var sqlServer = Context();
        using var sqlite = Context(StoreProviderKind.Sqlite);
        var script = sqlServer.Database.GenerateCreateScript();
        var errors = Parse(script);
        Assert.True(errors.Count == 0, Describe(errors, script));

        string Shape(BusFlowDbContext db) => string.Join("\n", db.Model.GetEntityTypes().OrderBy(t => t.GetTableName()).Select(t =>
            $"{t.GetTableName()}({string.Join(",", t.GetProperties().Select(p => p.GetColumnName()))}) key({string.Join(",", t.FindPrimaryKey()!.Properties.Select(p => p.GetColumnName()))}) "
            + string.Join(" ", t.GetIndexes().Select(i => (i.IsUnique ? "unique" : "index") + "(" + string.Join(",", i.Properties.Select(p => p.GetColumnName())) + ")").Order())));
        Assert.Equal(Shape(sqlite), Shape(sqlServer));

        // Instants keep their offset; the unique position index admits the many rows not yet positioned.
        Assert.Contains("[Timestamp] datetimeoffset NOT NULL", script);
        // Text compares byte for byte, as on the others: tenant "acme" is not "ACME".
        Assert.Matches(@"\[Tenant\] nvarchar\(450\) COLLATE Latin1_General_100_BIN2 NULL", script);
        Assert.Matches(@"\[Key\] nvarchar\(256\) COLLATE Latin1_General_100_BIN2 NOT NULL", script);
        Assert.Matches(@"CREATE UNIQUE INDEX \[IX_busflow_events_Position\] ON \[busflow_events\] \(\[Position\]\) WHERE \[Position\] IS NOT NULL", script);
    }

    [Theory]
    [InlineData(StoreProviderKind.Sqlite)]
    [InlineData(StoreProviderKind.Postgres)]
    [InlineData(StoreProviderKind.SqlServer)]
    public void Should_have_migrations_that_match_the_model(StoreProviderKind provider)
    {
        using var db = Context(provider);
        Assert.NotEmpty(db.Database.GetMigrations());
        Assert.False(db.Database.HasPendingModelChanges(), $"the model changed since {provider}'s last migration: add one with migrations/add.sh");
    }

    [Fact]
    public void Should_generate_an_idempotent_migration_script_that_parses()
    {
        using var db = Context();
        var script = db.GetService<IMigrator>().GenerateScript(options: MigrationsSqlGenerationOptions.Idempotent);
        var errors = Parse(script);
        Assert.True(errors.Count == 0, Describe(errors, script));
        Assert.All(db.Database.GetMigrations(), id => Assert.Contains($"IF NOT EXISTS (\n    SELECT * FROM [__EFMigrationsHistory]\n    WHERE [MigrationId] = N'{id}'", script.ReplaceLineEndings("\n")));
        Assert.Contains("CREATE TABLE [busflow_events]", script);
        // The delivery lease and the position counter are rows the store expects to find (inside
        // EXEC(N'...') in an idempotent script, so their quotes are doubled; the create script's
        // statements are parsed as they are above).
        Assert.Contains("N''outbox''", script);
        Assert.Contains("N''positions''", script);
    }

    [Fact]
    public void Should_send_only_statements_that_parse_as_TSQL()
    {
        using var db = Context();
        var statements = SqlServerDialect.Instance.Statements(db.Model).ToList();
        Assert.True(statements.Count >= 15, $"{statements.Count} statements");
        Assert.All(statements, sql =>
        {
            var errors = Parse(sql);
            Assert.True(errors.Count == 0, Describe(errors, sql));
        });
        Assert.Contains(statements, s => s.Contains("OUTPUT INSERTED.\"Id\"", StringComparison.Ordinal));
        Assert.Contains(statements, s => s.Contains("SELECT TOP (@limit)", StringComparison.Ordinal));
        Assert.DoesNotContain(statements, s => s.Contains("RETURNING", StringComparison.Ordinal) || s.Contains("LIMIT @limit", StringComparison.Ordinal));
        Assert.Contains(statements, s => s.Contains("\"value\" = @tv0 COLLATE Latin1_General_100_BIN2", StringComparison.Ordinal));
    }

    [Fact]
    public void Should_find_the_other_stores_statements_are_not_TSQL()
    {
        // The check above can fail: PostgreSQL's and SQLite's own statements do not parse as T-SQL.
        using var postgres = Context(StoreProviderKind.Postgres);
        using var sqlite = Context(StoreProviderKind.Sqlite);
        Assert.NotEmpty(Parse(PostgresDialect.Instance.PositionEventsSql!));
        Assert.NotEmpty(Parse(PostgresDialect.Instance.MoveCounterSql));
        Assert.NotEmpty(Parse(SqliteDialect.Instance.PositionEventsSql!));
        Assert.Contains(PostgresDialect.Instance.Statements(postgres.Model), sql => Parse(sql).Count > 0);
        Assert.Contains(SqliteDialect.Instance.Statements(sqlite.Model), sql => Parse(sql).Count > 0);
    }

    [Fact]
    public void Should_declare_every_string_parameter_as_nvarchar_max()
    {
        // One plan per statement whatever the strings' lengths, for the store's own statements and a group's rows alike.
        using var command = new Microsoft.Data.SqlClient.SqlCommand();
        SqlServerDialect.Instance.AddParameter(command, "short", "a");
        SqlServerDialect.Instance.AddParameter(command, "long", new string('x', 5000));
        SqlServerDialect.Instance.AddParameter(command, "number", 42L);
        Assert.Equal([-1, -1, 0], command.Parameters.Cast<Microsoft.Data.SqlClient.SqlParameter>().Select(p => p.Size));

        using var postgres = new Npgsql.NpgsqlCommand();
        PostgresDialect.Instance.AddParameter(postgres, "short", "a");
        Assert.Equal(0, postgres.Parameters[0].Size);
    }
}
