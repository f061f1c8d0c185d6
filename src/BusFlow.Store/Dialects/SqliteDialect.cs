using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace BusFlow.Store.Dialects;

/// <summary>
/// SQLite, the embedded default: one file, one writer at a time, instants stored as UTC ticks
/// (SQLite has no date type EF Core can compare or order by), statements run in process.
/// </summary>
internal sealed class SqliteDialect : StoreDialect
{
    public static readonly SqliteDialect Instance = new();

    private SqliteDialect()
    {
    }

    public override StoreProviderKind Kind => StoreProviderKind.Sqlite;

    public override string EfProviderName => "Microsoft.EntityFrameworkCore.Sqlite";

    public override string MigrationsAssembly => StoreProvider.SqliteMigrations;

    public override bool SingleWriter => true;

    public override bool MigratesByDefault => true;

    public override void Configure(DbContextOptionsBuilder options, string connectionString, bool sqliteFullSync)
    {
        options.UseSqlite(connectionString, o => o.MigrationsAssembly(MigrationsAssembly));
        options.AddInterceptors(sqliteFullSync ? ConnectionSetup.FullSync : ConnectionSetup.NormalSync);
    }

    public override void ConfigureConventions(ModelConfigurationBuilder conventions) =>
        conventions.Properties<DateTimeOffset>().HaveConversion<DateTimeOffsetToBinaryConverter>();

    public override bool IsUniqueViolation(Exception exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 1555 or 2067 };

    /// <summary>Busy, locked, an I/O error, cannot open (another process holds the file, or it is being replaced).</summary>
    public override bool IsTransient(Exception exception) => exception is SqliteException { SqliteErrorCode: 5 or 6 or 10 or 14 };

    private static readonly DateTimeOffsetToBinaryConverter Instants = new();

    /// <summary>The instant as EF Core stores it here (<see cref="ConfigureConventions"/>).</summary>
    public override object Instant(DateTimeOffset value) => (long)Instants.ConvertToProvider(value)!;

    public override string TagCondition(string key, string value) =>
        $"EXISTS (SELECT 1 FROM json_each(busflow_events.\"Payload\", '$.tags') WHERE key = {key} AND value = {value})";

    /// <summary>Two statements under SQLite's write lock: this one numbers the rows, <see cref="PositionEventsFollowUpSql"/> moves the counter.</summary>
    public override string? PositionEventsSql => """
        UPDATE busflow_events SET "Position" = n.position
        FROM (SELECT "Id", (SELECT "LastPosition" FROM busflow_leases WHERE "Name" = @counter) + row_number() OVER (ORDER BY "Id") AS position
              FROM busflow_events WHERE "Position" IS NULL ORDER BY "Id" LIMIT @limit) AS n
        WHERE busflow_events."Id" = n."Id"
          AND EXISTS (SELECT 1 FROM busflow_leases WHERE "Name" = @lease AND "Owner" = @owner AND "ExpiresAt" > @now)
        RETURNING "Id", "Position", "PipelineId", "Seq", "Type", "Payload"
        """;

    public override string PositionEventsFollowUpSql => """UPDATE busflow_leases SET "LastPosition" = "LastPosition" + @count WHERE "Name" = @counter""";

    /// <summary>A single-row INSERT, prepared once per call and executed per row.</summary>
    public const string InsertEventSql = """INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload", "Tenant") VALUES (@n, @g, @s, @t, @at, @p, @tn)""";

    /// <summary>With their prefix: Microsoft.Data.Sqlite otherwise tries each prefix in turn on every bind.</summary>
    private static readonly string[] InsertEventParameters = ["@n", "@g", "@s", "@t", "@at", "@p", "@tn"];

    /// <summary>
    /// In process, a statement costs no round trip; and SQLite finds each named parameter by a linear
    /// search of the statement's names, so a 200-row statement's 1,200 parameters cost 720,000 name
    /// comparisons (a tenth of the process's CPU under load). One prepared single-row statement,
    /// executed per row, binds 6.
    /// </summary>
    public override async Task InsertEventsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<PipelineEventRecord> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }

        var position = await MoveCounterAsync(connection, transaction, rows.Count, cancellationToken) - rows.Count;
        await using var single = connection.CreateCommand();
        single.Transaction = transaction;
        single.CommandText = InsertEventSql;
        var values = InsertEventParameters.Select(name =>
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
            values[4].Value = Instant(row.Timestamp);
            values[5].Value = row.Payload;
            values[6].Value = (object?)row.Tenant ?? DBNull.Value;
            await single.ExecuteNonQueryAsync(cancellationToken);
        }
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
    private sealed class ConnectionSetup(string synchronous) : DbConnectionInterceptor
    {
        /// <summary>The write-ahead log's size, in pages, at which a commit checkpoints it.</summary>
        internal const int WalCheckpointPages = 4000;

        public static readonly ConnectionSetup NormalSync = new("NORMAL");

        public static readonly ConnectionSetup FullSync = new("FULL");

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
