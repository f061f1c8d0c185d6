using BusFlow.Store.Dialects;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store;

/// <summary>Which database BusFlow.Store runs on.</summary>
public enum StoreProviderKind
{
    /// <summary>A local file; nothing to install (the embedded default).</summary>
    Sqlite,

    /// <summary>PostgreSQL 13 or later.</summary>
    Postgres,

    /// <summary>SQL Server 2016 or later; checked for model, migrations and statement syntax, not yet against a live server (docs/operations.md).</summary>
    SqlServer,
}

/// <summary>
/// What applications and tools need of the databases BusFlow.Store runs on: configuring EF Core for
/// one, the names of the migrations assemblies, and recognising a duplicate key. Each database's
/// own statements and behaviours are in one type per database (Dialects/).
/// </summary>
public static class StoreProvider
{
    public const string SqliteMigrations = "BusFlow.Store.Migrations.Sqlite";

    public const string PostgresMigrations = "BusFlow.Store.Migrations.Postgres";

    public const string SqlServerMigrations = "BusFlow.Store.Migrations.SqlServer";

    /// <summary>
    /// Configures the provider; for SQLite, <paramref name="sqliteFullSync"/> flushes to disk on every
    /// commit (<c>synchronous = FULL</c>) instead of at checkpoints (<c>NORMAL</c>, the default).
    /// </summary>
    public static void Configure(DbContextOptionsBuilder options, StoreProviderKind kind, string connectionString, bool sqliteFullSync = false) =>
        StoreDialect.For(kind).Configure(options, connectionString, sqliteFullSync);

    internal static void ConfigureConventions(string? providerName, ModelConfigurationBuilder conventions) =>
        StoreDialect.All.FirstOrDefault(d => d.EfProviderName == providerName)?.ConfigureConventions(conventions);

    /// <summary>True when the exception, or one it wraps, is a database refusing a duplicate key.</summary>
    public static bool IsUniqueViolation(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (StoreDialect.All.Any(d => d.IsUniqueViolation(e)))
            {
                return true;
            }
        }

        return false;
    }
}
