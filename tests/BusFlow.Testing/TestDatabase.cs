using BusFlow.Store;
using Npgsql;

namespace BusFlow.Testing;

/// <summary>
/// A fresh, empty database for one test: a temporary SQLite file, or a new PostgreSQL database on
/// the server tests/run.sh started (BUSFLOW_TEST_POSTGRES), dropped afterwards.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    private readonly string? _sqliteFile;
    private readonly string? _postgresName;

    private TestDatabase(StoreProviderKind provider, string connectionString, string? sqliteFile, string? postgresName)
    {
        Provider = provider;
        ConnectionString = connectionString;
        _sqliteFile = sqliteFile;
        _postgresName = postgresName;
    }

    public StoreProviderKind Provider { get; }

    public string ConnectionString { get; }

    public static string PostgresServer => Environment.GetEnvironmentVariable("BUSFLOW_TEST_POSTGRES")
        ?? throw new InvalidOperationException("BUSFLOW_TEST_POSTGRES is not set: run the tests through tests/run.sh, which installs and starts PostgreSQL.");

    public static async Task<TestDatabase> Create(StoreProviderKind provider)
    {
        if (provider == StoreProviderKind.Sqlite)
        {
            var file = Path.Combine(Path.GetTempPath(), $"busflow-test-{Guid.NewGuid():N}.db");
            return new TestDatabase(provider, $"Data Source={file}", file, null);
        }

        var name = $"busflow_test_{Guid.NewGuid():N}"[..30];
        await using (var admin = new NpgsqlConnection(PostgresServer + ";Database=postgres"))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }

        return new TestDatabase(provider, $"{PostgresServer};Database={name};Maximum Pool Size=50", null, name);
    }

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

        if (_postgresName is not null)
        {
            NpgsqlConnection.ClearAllPools();
            await using var admin = new NpgsqlConnection(PostgresServer + ";Database=postgres");
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {_postgresName} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        }
    }
}
