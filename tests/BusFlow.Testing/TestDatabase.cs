using BusFlow.Store;
using Npgsql;

namespace BusFlow.Testing;

/// <summary>
/// A fresh, empty database for one test: a temporary SQLite file, a new PostgreSQL database on the
/// server tests/run.sh started (BUSFLOW_TEST_POSTGRES), or a new SQL Server database on the server
/// BUSFLOW_TEST_SQLSERVER names (no SQL Server can be installed here: without it a SQL Server case
/// is skipped, by name, with the reason, and tests/run.sh lists it at the end), dropped afterwards.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly string? _sqliteFile;
    private readonly string? _serverName;

    private TestDatabase(StoreProviderKind provider, string connectionString, string? sqliteFile, string? serverName)
    {
        Provider = provider;
        ConnectionString = connectionString;
        _sqliteFile = sqliteFile;
        _serverName = serverName;
    }

    public StoreProviderKind Provider { get; }

    public string ConnectionString { get; }

    public static string PostgresServer => Environment.GetEnvironmentVariable("BUSFLOW_TEST_POSTGRES")
        ?? throw new InvalidOperationException("BUSFLOW_TEST_POSTGRES is not set: run the tests through tests/run.sh, which installs and starts PostgreSQL.");

    /// <summary>A SQL Server connection string (to any database the login may create databases from), or null.</summary>
    public static string? SqlServer => Environment.GetEnvironmentVariable("BUSFLOW_TEST_SQLSERVER") is { Length: > 0 } server ? server : null;

    /// <summary>Why SQL Server cases do not run here.</summary>
    public const string NoSqlServer = "no SQL Server: BUSFLOW_TEST_SQLSERVER is not set (none can be installed on this machine; docs/operations.md)";

    /// <summary>A new database; in a [SkippableTheory], skips the test for SQL Server when no server is named.</summary>
    public static async Task<TestDatabase> Create(StoreProviderKind provider)
    {
        if (provider == StoreProviderKind.Sqlite)
        {
            var file = Path.Combine(Path.GetTempPath(), $"busflow-test-{Guid.NewGuid():N}.db");
            return new TestDatabase(provider, $"Data Source={file}", file, null);
        }

        var name = $"busflow_test_{Guid.NewGuid():N}"[..30];
        if (provider == StoreProviderKind.SqlServer)
        {
            Skip.If(SqlServer is null, NoSqlServer);
            await using (var admin = new Microsoft.Data.SqlClient.SqlConnection(SqlServerDatabase("master")))
            {
                await admin.OpenAsync();
                await using var create = new Microsoft.Data.SqlClient.SqlCommand($"CREATE DATABASE {name}", admin);
                await create.ExecuteNonQueryAsync();
            }

            return new TestDatabase(provider, SqlServerDatabase(name), null, name);
        }

        await using (var admin = new NpgsqlConnection(PostgresServer + ";Database=postgres"))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        return new TestDatabase(provider, $"{PostgresServer};Database={name};Maximum Pool Size=50", null, name);
    }

    private static string SqlServerDatabase(string name) =>
        new Microsoft.Data.SqlClient.SqlConnectionStringBuilder(SqlServer) { InitialCatalog = name }.ConnectionString;

    public BusFlowStoreOptions Options(Action<BusFlowStoreOptions>? configure = null)
    {
        var options = new BusFlowStoreOptions { Provider = Provider, ConnectionString = ConnectionString, ApplyMigrations = true };
        configure?.Invoke(options);
        return options;
    }

    /// <summary>EF Core options for a context of its own on this database, outside any host.</summary>
    public Microsoft.EntityFrameworkCore.DbContextOptions<BusFlowDbContext> ContextOptions()
    {
        var options = new Microsoft.EntityFrameworkCore.DbContextOptionsBuilder<BusFlowDbContext>();
        StoreProvider.Configure(options, Provider, ConnectionString);
        return options.Options;
    }

    /// <summary>Applies the store's migrations, outside any host.</summary>
    public async Task MigrateAsync()
    {
        await using var context = new BusFlowDbContext(ContextOptions());
        await Microsoft.EntityFrameworkCore.RelationalDatabaseFacadeExtensions.MigrateAsync(context.Database);
    }

    public async ValueTask DisposeAsync()
    {
        if (_sqliteFile is not null)
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            foreach (var suffix in new[] { "", "-wal", "-shm" })
            {
                File.Delete(_sqliteFile + suffix);
            }
        }

        if (_serverName is not null && Provider == StoreProviderKind.Postgres)
        {
            NpgsqlConnection.ClearAllPools();
            await using var admin = new NpgsqlConnection(PostgresServer + ";Database=postgres");
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_serverName} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        }

        if (_serverName is not null && Provider == StoreProviderKind.SqlServer)
        {
            Microsoft.Data.SqlClient.SqlConnection.ClearAllPools();
            await using var admin = new Microsoft.Data.SqlClient.SqlConnection(SqlServerDatabase("master"));
            await admin.OpenAsync();
            await using var drop = new Microsoft.Data.SqlClient.SqlCommand(
                $"IF DB_ID(N'{_serverName}') IS NOT NULL BEGIN ALTER DATABASE {_serverName} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE {_serverName}; END", admin);
            await drop.ExecuteNonQueryAsync();
        }
    }
}
