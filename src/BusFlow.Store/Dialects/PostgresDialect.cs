using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace BusFlow.Store.Dialects;

/// <summary>
/// PostgreSQL 13 or later: row locks, statements prepared by Npgsql, a group's inbox rows and
/// delivered marks written from arrays, text read from Npgsql's row buffer.
/// </summary>
internal sealed class PostgresDialect : StoreDialect
{
    public static readonly PostgresDialect Instance = new();

    private PostgresDialect()
    {
    }

    public override StoreProviderKind Kind => StoreProviderKind.Postgres;

    public override string EfProviderName => "Npgsql.EntityFrameworkCore.PostgreSQL";

    public override string MigrationsAssembly => StoreProvider.PostgresMigrations;

    public override void Configure(DbContextOptionsBuilder options, string connectionString, bool sqliteFullSync) =>
        options.UseNpgsql(WithAutoPrepare(connectionString), o => o.MigrationsAssembly(MigrationsAssembly));

    /// <summary>The statements Npgsql prepares on each connection unless the connection string says otherwise.</summary>
    internal const int AutoPrepared = 64;

    /// <summary>
    /// The connection string with Npgsql's automatic preparation on (<c>Max Auto Prepare</c>), unless
    /// it sets that itself (0 turns it off, for a pooler that cannot keep prepared statements): the
    /// hot path sends the same few statements thousands of times a second, and unprepared each one was
    /// parsed and planned again, about as much of PostgreSQL's time as running it.
    /// </summary>
    internal static string WithAutoPrepare(string connectionString)
    {
        // The plain builder holds only the keys the string sets (Npgsql's answers for every keyword it knows).
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString };
        if (given.ContainsKey("Max Auto Prepare") || given.ContainsKey("MaxAutoPrepare"))
        {
            return connectionString;
        }

        return new NpgsqlConnectionStringBuilder(connectionString) { MaxAutoPrepare = AutoPrepared }.ConnectionString;
    }

    public override bool IsUniqueViolation(Exception exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };

    /// <summary>What Npgsql calls transient, a lost connection (class 08), the server shutting down or restarting (57P), and any other Npgsql error short of a statement's own.</summary>
    public override bool IsTransient(Exception exception) => exception switch
    {
        PostgresException pg => pg.IsTransient || pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("57P", StringComparison.Ordinal),
        NpgsqlException => true,
        _ => false,
    };

    public override bool ReadsTextInPlace => true;

    /// <summary>As json, not jsonb: jsonb refuses an escaped NUL, which System.Text.Json writes.</summary>
    public override string TagCondition(string key, string value) => $"(CAST(\"Payload\" AS json) -> 'tags' ->> {key}) = {value}";

    public override string InsertInboxRowsSql =>
        """INSERT INTO busflow_inbox ("MessageId", "Consumer", "ReceivedAt") SELECT * FROM unnest(@p0::uuid[], @p1::text[], @p2::timestamptz[])""";

    public override string MarkRowsDeliveredSql =>
        """UPDATE busflow_outbox AS o SET "DeliveredAt" = m.at FROM unnest(@p0::bigint[], @p1::timestamptz[]) AS m(id, at) WHERE o."Id" = m.id""";

    /// <summary>One statement; the counter row's lock orders positioners, and nothing is numbered unless the lease is held (no counter row: no numbers).</summary>
    public override string? PositionEventsSql => """
        WITH held AS (SELECT 1 FROM busflow_leases WHERE "Name" = @lease AND "Owner" = @owner AND "ExpiresAt" > @now FOR SHARE),
        counter AS (SELECT "LastPosition" AS last FROM busflow_leases WHERE "Name" = @counter AND EXISTS (SELECT 1 FROM held) FOR UPDATE),
        fresh AS (SELECT "Id" FROM busflow_events WHERE "Position" IS NULL ORDER BY "Id" LIMIT @limit FOR UPDATE),
        numbered AS (SELECT f."Id", c.last + row_number() OVER (ORDER BY f."Id") AS position FROM fresh f CROSS JOIN counter c),
        moved AS (UPDATE busflow_leases SET "LastPosition" = "LastPosition" + (SELECT count(*) FROM numbered) WHERE "Name" = @counter AND EXISTS (SELECT 1 FROM numbered))
        UPDATE busflow_events e SET "Position" = n.position FROM numbered n WHERE e."Id" = n."Id"
        RETURNING e."Id", e."Position", e."PipelineId", e."Seq", e."Type", e."Payload"
        """;
}
