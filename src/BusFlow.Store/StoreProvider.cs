using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
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
/// The one seam where providers differ: how a provider is configured (for SQLite, how its connections
/// are set up for concurrent use), its migrations assembly, model conventions it needs, and how it
/// reports a unique-key violation. Adding SQL Server means a case in each method plus a migrations
/// assembly (docs/operations.md).
/// </summary>
public static class StoreProvider
{
    public const string SqliteMigrations = "BusFlow.Store.Migrations.Sqlite";

    public const string PostgresMigrations = "BusFlow.Store.Migrations.Postgres";

    /// <summary>
    /// Configures the provider; for SQLite, <paramref name="sqliteFullSync"/> flushes to disk on every
    /// commit (<c>synchronous = FULL</c>) instead of at checkpoints (<c>NORMAL</c>, the default).
    /// </summary>
    public static void Configure(DbContextOptionsBuilder options, StoreProviderKind kind, string connectionString, bool sqliteFullSync = false)
    {
        switch (kind)
        {
            case StoreProviderKind.Postgres:
                options.UseNpgsql(WithAutoPrepare(connectionString), o => o.MigrationsAssembly(PostgresMigrations));
                break;
            default:
                options.UseSqlite(connectionString, o => o.MigrationsAssembly(SqliteMigrations));
                options.AddInterceptors(sqliteFullSync ? SqliteConnectionSetup.FullSync : SqliteConnectionSetup.NormalSync);
                break;
        }
    }

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
        var given = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString };
        if (given.ContainsKey("Max Auto Prepare") || given.ContainsKey("MaxAutoPrepare"))
        {
            return connectionString;
        }

        return new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { MaxAutoPrepare = AutoPrepared }.ConnectionString;
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

    /// <summary>
    /// Gives the next committed, unpositioned event rows (at most <paramref name="limit"/>, in row
    /// order) the next store-wide positions, moves the position counter by as many (while @owner holds the lease), and returns the rows
    /// in position order; all inside <paramref name="transaction"/>, in one statement on PostgreSQL
    /// (the counter row's lock orders positioners) and two under SQLite's write lock. Only committed rows
    /// are seen, so a row whose transaction commits later gets a later position (docs/architecture.md).
    /// The one place with provider-specific SQL for delivery; a new provider adds a case here.
    /// </summary>
    internal static async Task<List<PipelineEventRecord>> PositionEventsAsync(
        DbConnection connection, DbTransaction transaction, StoreProviderKind kind, string lease, string owner, DateTimeOffset now, int limit, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        // Nothing is positioned unless @owner still holds the lease at @now (no counter row: no numbers).
        command.CommandText = kind == StoreProviderKind.Postgres
            ? """
              WITH held AS (SELECT 1 FROM busflow_leases WHERE "Name" = @lease AND "Owner" = @owner AND "ExpiresAt" > @now FOR SHARE),
              counter AS (SELECT "LastPosition" AS last FROM busflow_leases WHERE "Name" = @counter AND EXISTS (SELECT 1 FROM held) FOR UPDATE),
              fresh AS (SELECT "Id" FROM busflow_events WHERE "Position" IS NULL ORDER BY "Id" LIMIT @limit FOR UPDATE),
              numbered AS (SELECT f."Id", c.last + row_number() OVER (ORDER BY f."Id") AS position FROM fresh f CROSS JOIN counter c),
              moved AS (UPDATE busflow_leases SET "LastPosition" = "LastPosition" + (SELECT count(*) FROM numbered) WHERE "Name" = @counter AND EXISTS (SELECT 1 FROM numbered))
              UPDATE busflow_events e SET "Position" = n.position FROM numbered n WHERE e."Id" = n."Id"
              RETURNING e."Id", e."Position", e."PipelineId", e."Seq", e."Type", e."Payload"
              """
            : """
              UPDATE busflow_events SET "Position" = n.position
              FROM (SELECT "Id", (SELECT "LastPosition" FROM busflow_leases WHERE "Name" = @counter) + row_number() OVER (ORDER BY "Id") AS position
                    FROM busflow_events WHERE "Position" IS NULL ORDER BY "Id" LIMIT @limit) AS n
              WHERE busflow_events."Id" = n."Id"
                AND EXISTS (SELECT 1 FROM busflow_leases WHERE "Name" = @lease AND "Owner" = @owner AND "ExpiresAt" > @now)
              RETURNING "Id", "Position", "PipelineId", "Seq", "Type", "Payload"
              """;
        AddParameter(command, "lease", lease);
        AddParameter(command, "counter", Internal.OutboxDelivery.PositionCounter);
        AddParameter(command, "owner", owner);
        AddParameter(command, "now", kind == StoreProviderKind.Sqlite ? SqliteInstant(now) : now.ToUniversalTime());
        AddParameter(command, "limit", limit);
        var rows = new List<PipelineEventRecord>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add(new PipelineEventRecord
                {
                    Id = reader.GetInt64(0),
                    Position = reader.GetInt64(1),
                    PipelineId = reader.GetGuid(2),
                    Seq = reader.GetInt64(3),
                    Type = reader.GetString(4),
                    Payload = reader.GetString(5),
                });
            }
        }

        if (kind != StoreProviderKind.Postgres && rows.Count > 0)
        {
            await using var counter = connection.CreateCommand();
            counter.Transaction = transaction;
            counter.CommandText = """UPDATE busflow_leases SET "LastPosition" = "LastPosition" + @count WHERE "Name" = @counter""";
            AddParameter(counter, "count", rows.Count);
            AddParameter(counter, "counter", Internal.OutboxDelivery.PositionCounter);
            await counter.ExecuteNonQueryAsync(cancellationToken);
        }

        rows.Sort((a, b) => a.Position!.Value.CompareTo(b.Position!.Value));
        return rows;
    }

    /// <summary>
    /// Inserts event rows, in list order, with their store-wide positions: first moves the position
    /// counter (its own row of busflow_leases) by the number of rows (taking, on PostgreSQL, the counter row's lock
    /// until the caller's transaction ends; on SQLite the caller already holds the file's write lock),
    /// then inserts with multi-row INSERTs (up to 200 rows per statement) where EF Core sends one
    /// INSERT ... RETURNING per row, and sets each row's <see cref="PipelineEventRecord.Position"/>.
    /// Call it as the transaction's last write: whoever takes the next positions waits for this
    /// transaction to end, so positions follow commit order (docs/architecture.md). Plain SQL every
    /// provider here accepts; the SQLite instant is stored as EF Core stores it there.
    /// </summary>
    internal static async Task InsertEventsAsync(
        DbConnection connection, DbTransaction transaction, StoreProviderKind kind, IReadOnlyList<PipelineEventRecord> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }

        long last;
        await using (var counter = connection.CreateCommand())
        {
            counter.Transaction = transaction;
            counter.CommandText = """UPDATE busflow_leases SET "LastPosition" = "LastPosition" + @count WHERE "Name" = @counter RETURNING "LastPosition" """;
            AddParameter(counter, "count", (long)rows.Count);
            AddParameter(counter, "counter", Internal.OutboxDelivery.PositionCounter);
            last = Convert.ToInt64(await counter.ExecuteScalarAsync(cancellationToken)
                ?? throw new InvalidOperationException("The position counter's row is missing: the store's migrations were not applied."), CultureInfo.InvariantCulture);
        }

        var position = last - rows.Count;
        if (kind == StoreProviderKind.Sqlite)
        {
            // In process, a statement costs no round trip; and SQLite finds each named parameter by
            // a linear search of the statement's names, so a 200-row statement's 1,200 parameters
            // cost 720,000 name comparisons (a tenth of the process's CPU under load). One prepared
            // single-row statement, executed per row, binds 6.
            await using var single = connection.CreateCommand();
            single.Transaction = transaction;
            single.CommandText = """INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload", "Tenant") VALUES (@n, @g, @s, @t, @at, @p, @tn)""";
            var values = SingleEventParameters.Select(name =>
            {
                var parameter = single.CreateParameter();
                parameter.ParameterName = name;
                single.Parameters.Add(parameter);
                return parameter;
            }).ToArray();
            foreach (var row in rows)
            {
                row.Position = ++position;
                values[0].Value = position;
                values[1].Value = row.PipelineId;
                values[2].Value = row.Seq;
                values[3].Value = row.Type;
                values[4].Value = SqliteInstant(row.Timestamp);
                values[5].Value = row.Payload;
                values[6].Value = (object?)row.Tenant ?? DBNull.Value;
                await single.ExecuteNonQueryAsync(cancellationToken);
            }

            return;
        }

        const int RowsPerStatement = 200;
        for (var from = 0; from < rows.Count; from += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, rows.Count - from);
            await using var command = connection.CreateCommand();
            command.Transaction = transaction;
            var text = new System.Text.StringBuilder("""INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload", "Tenant") VALUES """);
            for (var i = 0; i < count; i++)
            {
                var row = rows[from + i];
                row.Position = ++position;
                text.Append(i == 0 ? "(" : ", (").Append("@n").Append(i).Append(", @g").Append(i).Append(", @s").Append(i).Append(", @t").Append(i).Append(", @at").Append(i).Append(", @p").Append(i).Append(", @tn").Append(i).Append(')');
                AddParameter(command, "n" + i, position);
                AddParameter(command, "g" + i, row.PipelineId);
                AddParameter(command, "s" + i, row.Seq);
                AddParameter(command, "t" + i, row.Type);
                AddParameter(command, "at" + i, kind == StoreProviderKind.Sqlite ? SqliteInstant(row.Timestamp) : row.Timestamp.ToUniversalTime());
                AddParameter(command, "p" + i, row.Payload);
                AddParameter(command, "tn" + i, (object?)row.Tenant ?? DBNull.Value);
            }

            command.CommandText = text.ToString();
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>With their prefix: Microsoft.Data.Sqlite otherwise tries each prefix in turn on every bind.</summary>
    private static readonly string[] SingleEventParameters = ["@n", "@g", "@s", "@t", "@at", "@p", "@tn"];

    private static readonly DateTimeOffsetToBinaryConverter SqliteInstants = new();

    private static long SqliteInstant(DateTimeOffset value) => (long)SqliteInstants.ConvertToProvider(value)!;

    /// <summary>
    /// True when the reader copies a text column's bytes (<see cref="DbDataReader.GetBytes"/>) and
    /// characters (<see cref="DbDataReader.GetChars"/>) straight from its row buffer, so reading them
    /// into a caller's buffer costs less than a new string or array per row.
    /// </summary>
    internal static bool ReadsTextInPlace(DbDataReader reader) => reader is Npgsql.NpgsqlDataReader;

    internal static void AddParameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    /// <summary>
    /// Sets up each SQLite connection the first time it is opened (pooled connections keep it) for
    /// many connections at once, in this process and others, on one file:
    /// <list type="bullet">
    /// <item>WAL journal mode: readers and the one writer no longer block each other, and a commit
    /// appends to the log instead of rewriting pages under an exclusive lock. Without it every
    /// commit waits for all readers to finish and every read waits for a committing writer.</item>
    /// <item>A busy timeout as long as the connection's <c>Default Timeout</c> (30 s unless the
    /// connection string sets one), so SQLite itself waits for the lock, retrying after 1 ms at
    /// first and at most 100 ms apart. Without it SQLITE_BUSY goes back to Microsoft.Data.Sqlite,
    /// which sleeps the thread 150 ms before each retry: a released lock sits idle while waiters
    /// sleep, and under load writers queue for seconds until one gives up after 30 s.</item>
    /// <item><c>synchronous = NORMAL</c> unless full sync was asked for: in WAL mode a commit then
    /// appends to the log without waiting for the disk, which is flushed at checkpoints. A process
    /// that dies (crash, SIGKILL) loses nothing that committed; only an operating-system crash or a
    /// power cut can lose the last commits, and never corrupts the file. <c>FULL</c> waits for the
    /// disk on every commit, which on this kind of machine cut pipeline throughput by about half.</item>
    /// <item>SQLite's own checkpoint only once the log holds <see cref="WalCheckpointPages"/> pages
    /// (16 MiB at the default page size) instead of 1,000: a checkpoint copies the pages the log
    /// changed back into the file and flushes both, inside the commit that crossed the size. The
    /// store's <c>SqliteCheckpointer</c> checkpoints in the background every 100 ms instead, off every
    /// transaction's path; this size is the safety net should it fall behind. Measured
    /// (docs/performance.md): in memory + SQLite, a fifth more pipelines per second and the p99 of a
    /// step's completion to a subscriber at 100 pipelines/s from about 20 to about 10 ms; SQLite's
    /// checkpoints at 4,000 pages without the background one doubled that p99.</item>
    /// </list>
    /// Write transactions take the write lock when they begin (Microsoft.Data.Sqlite begins
    /// <c>BEGIN IMMEDIATE</c> for every transaction EF Core opens), so none reads first and then
    /// finds the lock taken, which SQLite reports at once, without waiting.
    /// </summary>
    private sealed class SqliteConnectionSetup(string synchronous) : DbConnectionInterceptor
    {
        /// <summary>The write-ahead log's size, in pages, at which a commit checkpoints it.</summary>
        internal const int WalCheckpointPages = 4000;

        public static readonly SqliteConnectionSetup NormalSync = new("NORMAL");

        public static readonly SqliteConnectionSetup FullSync = new("FULL");

        private static readonly ConditionalWeakTable<object, object> Done = [];

        public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData) => SetUp(connection);

        public override Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
        {
            SetUp(connection);
            return Task.CompletedTask;
        }

        private void SetUp(DbConnection connection)
        {
            // The native handle outlives the SqliteConnection object when the connection is pooled.
            if (connection is not SqliteConnection { Handle: { } handle } sqlite || Done.TryGetValue(handle, out _))
            {
                return;
            }

            using var command = sqlite.CreateCommand();
            var busyTimeout = sqlite.DefaultTimeout == 0 ? int.MaxValue : Math.Min((long)sqlite.DefaultTimeout * 1000, int.MaxValue);
            command.CommandText = string.Create(CultureInfo.InvariantCulture, $"PRAGMA busy_timeout = {busyTimeout}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA wal_autocheckpoint = {WalCheckpointPages};");
            command.ExecuteNonQuery();
            Done.AddOrUpdate(handle, handle);
        }
    }
}
