using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace BusFlow.Store;

/// <summary>Which database BusFlow.Store runs on.</summary>
public enum StoreProviderKind
{
    /// <summary>A local file; nothing to install (the embedded default).</summary>
    Sqlite,

    /// <summary>PostgreSQL 13 or later.</summary>
    Postgres,
}

/// <summary>
/// The one seam where providers differ: how a provider is configured, its migrations assembly, model
/// conventions it needs, and how it reports a unique-key violation. Adding SQL Server means a case
/// in each method plus a migrations assembly (docs/operations.md).
/// </summary>
public static class StoreProvider
{
    public const string SqliteMigrations = "BusFlow.Store.Migrations.Sqlite";

    public const string PostgresMigrations = "BusFlow.Store.Migrations.Postgres";

    public static void Configure(DbContextOptionsBuilder options, StoreProviderKind kind, string connectionString)
    {
        switch (kind)
        {
            case StoreProviderKind.Postgres:
                options.UseNpgsql(connectionString, o => o.MigrationsAssembly(PostgresMigrations));
                break;
            default:
                options.UseSqlite(connectionString, o => o.MigrationsAssembly(SqliteMigrations));
                break;
        }
    }

    internal static void ConfigureConventions(string? providerName, ModelConfigurationBuilder conventions)
    {
        // SQLite has no date type EF can compare or order by: store instants as UTC ticks.
        if (providerName == "Microsoft.EntityFrameworkCore.Sqlite")
        {
            conventions.Properties<DateTimeOffset>().HaveConversion<DateTimeOffsetToBinaryConverter>();
        }
    }

    /// <summary>True when the exception is the database refusing a duplicate key.</summary>
    public static bool IsUniqueViolation(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case Npgsql.PostgresException pg when pg.SqlState == Npgsql.PostgresErrorCodes.UniqueViolation:
                case Microsoft.Data.Sqlite.SqliteException sqlite when sqlite.SqliteErrorCode == 19 && sqlite.SqliteExtendedErrorCode is 1555 or 2067:
                    return true;
            }
        }

        return false;
    }
}
