using System.Data.Common;
using System.Text;
using Microsoft.Data.SqlClient;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Dialects;

/// <summary>
/// SQL Server 2016 or later (compatibility level 130, for <c>OPENJSON</c>; EF Core's own queries
/// use it too): <c>OUTPUT</c> where the others use <c>RETURNING</c>, <c>TOP</c> where they use
/// <c>LIMIT</c>, <c>OPENJSON</c> for the tag filter, a byte-for-byte collation on text,
/// and the same optimistic check on the pipeline's <c>Version</c> as the others. Identifiers are
/// written in double quotes, which SQL Server reads as identifiers with <c>QUOTED_IDENTIFIER ON</c>
/// (every SqlClient connection's default). Checked here for model, migrations and statement syntax
/// only: no SQL Server can be run on the machines this is built on (docs/operations.md).
/// </summary>
internal sealed class SqlServerDialect : StoreDialect
{
    public static readonly SqlServerDialect Instance = new();

    private SqlServerDialect()
    {
    }

    public override StoreProviderKind Kind => StoreProviderKind.SqlServer;

    /// <summary>
    /// Every string as nvarchar(max): one declared type for every length, so SQL Server keeps one
    /// plan per statement instead of one per combination of string lengths.
    /// </summary>
    public override void Declare(System.Data.Common.DbParameter parameter)
    {
        if (parameter.Value is string)
        {
            parameter.Size = -1;
        }
    }

    public override string EfProviderName => "Microsoft.EntityFrameworkCore.SqlServer";

    public override string MigrationsAssembly => StoreProvider.SqlServerMigrations;

    /// <summary>EF Core's own queries written for compatibility level 130 (SQL Server 2016), the oldest this dialect supports.</summary>
    public override void Configure(DbContextOptionsBuilder options, string connectionString, bool sqliteFullSync) =>
        options.UseSqlServer(connectionString, o => o.MigrationsAssembly(MigrationsAssembly).UseCompatibilityLevel(130));

    /// <summary>
    /// Text compares as the other two compare it, byte for byte: SQL Server's usual default
    /// collation ignores case and trailing spaces, so a filter on tenant <c>acme</c> would also
    /// select <c>ACME</c>'s events, and two idempotency keys differing in case would be one.
    /// </summary>
    public const string Collation = "Latin1_General_100_BIN2";

    public override void ConfigureConventions(ModelConfigurationBuilder conventions) =>
        conventions.Properties<string>().UseCollation(Collation);

    /// <summary>A duplicate key in a unique index (2601) or a primary key or unique constraint (2627).</summary>
    public override bool IsUniqueViolation(Exception exception) => exception is SqlException { Number: 2601 or 2627 };

    /// <summary>
    /// The errors SQL Server and its client give for a server that is away, failing over, shutting
    /// down, throttling or timing out, and for deadlock victims and lock time-outs (the transaction
    /// is rolled back and the work applies when retried).
    /// </summary>
    public override bool IsTransient(Exception exception) =>
        exception is SqlException sql
        && (sql.Errors.Cast<SqlError>().Any(e => TransientErrors.Contains(e.Number))
            || sql.InnerException is System.Net.Sockets.SocketException or System.ComponentModel.Win32Exception);

    /// <summary>The numbers of the errors above; on Linux a refused or broken connection comes as a provider error (35, 40) with a socket exception inside, also counted.</summary>
    private static readonly HashSet<int> TransientErrors =
    [
        -2, 2, 20, 35, 40, 53, 64, 121, 233, 258, 1205, 1222, 4060, 4221, 6005, 10053, 10054, 10060, 10061, 10928, 10929, 10936,
        11001, 40143, 40197, 40501, 40540, 40613, 49918, 49919, 49920,
    ];

    /// <summary>SqlClient has no bytes of an nvarchar column: the string, encoded.</summary>
    public override byte[] TextBytes(DbDataReader reader, int ordinal) => Encoding.UTF8.GetBytes(reader.GetString(ordinal));

    public override string Limited(string columns, string from, string orderBy) => $"SELECT TOP (@limit) {columns} {from} ORDER BY {orderBy}";

    /// <summary>OPENJSON's keys compare byte for byte already; its values in the database's collation, so they are given <see cref="Collation"/>.</summary>
    public override string TagCondition(string key, string value) =>
        $"EXISTS (SELECT 1 FROM OPENJSON(busflow_events.\"Payload\", '$.tags') WHERE \"key\" = {key} AND \"value\" = {value} COLLATE {Collation})";

    public override string InsertReturning(string table, string columns, string values, string generated) =>
        $"INSERT INTO {table} ({columns}) OUTPUT INSERTED.{generated} VALUES ({values})";

    /// <summary>The UPDATE's exclusive lock on the counter row is held until the transaction ends, as PostgreSQL's is.</summary>
    public override string MoveCounterSql => """UPDATE busflow_leases SET "LastPosition" = "LastPosition" + @count OUTPUT INSERTED."LastPosition" WHERE "Name" = @counter""";
}
