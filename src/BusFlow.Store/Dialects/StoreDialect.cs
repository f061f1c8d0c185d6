using System.Data.Common;
using System.Globalization;
using System.Text;
using Microsoft.EntityFrameworkCore;

namespace BusFlow.Store.Dialects;

/// <summary>
/// What one database does its own way: how EF Core is configured for it and where its migrations
/// are, which of its errors mean a duplicate key or a passing outage, whether it has one writer at a
/// time, how instants travel as parameters, and the text of every raw statement the store sends
/// (event inserts, positioning, the position counter, paging and tag filters of the event log, a
/// group's rows). One type per database, chosen once from <see cref="BusFlowStoreOptions.Provider"/>
/// (<see cref="For"/>); the code that runs the statements is shared. Everything else the store does
/// goes through EF Core's LINQ, which its provider translates. Adding a database means a class here,
/// a case in <see cref="For"/> and a migrations assembly (docs/operations.md).
/// </summary>
internal abstract class StoreDialect
{
    /// <summary>The dialect of <paramref name="kind"/>.</summary>
    public static StoreDialect For(StoreProviderKind kind) => kind switch
    {
        StoreProviderKind.Sqlite => SqliteDialect.Instance,
        StoreProviderKind.Postgres => PostgresDialect.Instance,
        StoreProviderKind.SqlServer => SqlServerDialect.Instance,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a store provider BusFlow knows."),
    };

    /// <summary>Every dialect, for what is decided by the exception's type rather than by the configured provider.</summary>
    public static IReadOnlyList<StoreDialect> All => AllDialects ??= [SqliteDialect.Instance, PostgresDialect.Instance, SqlServerDialect.Instance];

    private static StoreDialect[]? AllDialects;

    public abstract StoreProviderKind Kind { get; }

    /// <summary>EF Core's name for its provider (<c>DatabaseFacade.ProviderName</c>).</summary>
    public abstract string EfProviderName { get; }

    /// <summary>The assembly that holds this database's migrations (migrations/README.md).</summary>
    public abstract string MigrationsAssembly { get; }

    /// <summary>Configures EF Core for this database; <paramref name="sqliteFullSync"/> is SQLite's alone.</summary>
    public abstract void Configure(DbContextOptionsBuilder options, string connectionString, bool sqliteFullSync);

    /// <summary>Model conventions this database needs.</summary>
    public virtual void ConfigureConventions(ModelConfigurationBuilder conventions)
    {
    }

    /// <summary>True when <paramref name="exception"/> itself (not its inner ones) is this database refusing a duplicate key.</summary>
    public abstract bool IsUniqueViolation(Exception exception);

    /// <summary>True when <paramref name="exception"/> itself is this database away, restarting or busy: the work is retried until it is back.</summary>
    public abstract bool IsTransient(Exception exception);

    /// <summary>True when the database takes one writer at a time (a file lock), so this process's writers queue in memory (<c>StoreWriteGate</c>) and group commits have one writer.</summary>
    public virtual bool SingleWriter => false;

    /// <summary>Whether the store applies migrations at start unless told otherwise: for an embedded file, yes; for a server, an operator's step.</summary>
    public virtual bool MigratesByDefault => false;

    /// <summary>An instant as a parameter's value, as this database stores it.</summary>
    public virtual object Instant(DateTimeOffset value) => value.ToUniversalTime();

    /// <summary>
    /// True when the provider's reader copies a text column's bytes straight from its row buffer
    /// (<see cref="DbDataReader.GetBytes"/>), so replay reads the payload and type into its own buffers
    /// instead of a new string or array per row.
    /// </summary>
    public virtual bool ReadsTextInPlace => false;

    /// <summary>The UTF-8 bytes of the text column <paramref name="ordinal"/> (where <see cref="ReadsTextInPlace"/> is false).</summary>
    public virtual byte[] TextBytes(DbDataReader reader, int ordinal) => reader.GetFieldValue<byte[]>(ordinal);

    /// <summary>
    /// A query limited to <c>@limit</c> rows: <c>SELECT <paramref name="columns"/> <paramref name="from"/> ORDER BY <paramref name="orderBy"/></c>
    /// with this database's way of taking the first rows.
    /// </summary>
    public virtual string Limited(string columns, string from, string orderBy) => $"SELECT {columns} {from} ORDER BY {orderBy} LIMIT @limit";

    /// <summary>
    /// A condition on an event row (table <c>busflow_events</c>): its stored JSON's <c>tags</c> object
    /// has the key in parameter <paramref name="key"/> with the value in <paramref name="value"/>,
    /// parsed by the database.
    /// </summary>
    public abstract string TagCondition(string key, string value);

    /// <summary>An INSERT of one row that returns the generated key column <paramref name="generated"/>.</summary>
    public virtual string InsertReturning(string table, string columns, string values, string generated) =>
        $"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING {generated}";

    /// <summary>
    /// Where a group's inbox rows go in one statement, from one array parameter per column
    /// (<c>@p0</c> message ids, <c>@p1</c> consumers, <c>@p2</c> instants); null: one INSERT per row.
    /// </summary>
    public virtual string? InsertInboxRowsSql => null;

    /// <summary>Where a group's delivered marks go in one statement (<c>@p0</c> outbox ids, <c>@p1</c> instants); null: one UPDATE per row.</summary>
    public virtual string? MarkRowsDeliveredSql => null;

    /// <summary>
    /// Moves the position counter (row <c>@counter</c> of busflow_leases) by <c>@count</c> and returns
    /// its new value, holding the counter row's lock until the transaction ends.
    /// </summary>
    public virtual string MoveCounterSql => """UPDATE busflow_leases SET "LastPosition" = "LastPosition" + @count WHERE "Name" = @counter RETURNING "LastPosition" """;

    /// <summary>
    /// Gives the next committed, unpositioned event rows (at most <c>@limit</c>, in row order) the next
    /// store-wide positions and moves the counter by as many, while <c>@owner</c> holds lease
    /// <c>@lease</c> at <c>@now</c>; returns the rows (Id, Position, PipelineId, Seq, Type, Payload).
    /// Such rows were written by a version before positions were given at insert; null for a
    /// database whose stores began after that (SQL Server), which the delivery then never looks for.
    /// </summary>
    public virtual string? PositionEventsSql => null;

    /// <summary>A statement run after <see cref="PositionEventsSql"/> when that returned rows (<c>@count</c> of them), or null.</summary>
    public virtual string? PositionEventsFollowUpSql => null;

    /// <summary>How many event rows one INSERT writes at most (its parameters stay under every provider's limit).</summary>
    public const int EventRowsPerStatement = 200;

    /// <summary>A multi-row INSERT of <paramref name="rows"/> event rows, parameters <c>@n0, @g0, @s0, @t0, @at0, @p0, @tn0</c> and on.</summary>
    public static string InsertEventsSql(int rows)
    {
        var text = new StringBuilder(InsertEventsHead);
        for (var i = 0; i < rows; i++)
        {
            text.Append(i == 0 ? "(" : ", (").Append(CultureInfo.InvariantCulture, $"@n{i}, @g{i}, @s{i}, @t{i}, @at{i}, @p{i}, @tn{i})");
        }

        return text.ToString();
    }

    private const string InsertEventsHead = """INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload", "Tenant") VALUES """;

    /// <summary>
    /// Inserts event rows, in list order, with their store-wide positions: first moves the position
    /// counter by the number of rows (its row's lock, or SQLite's write lock, held until the caller's
    /// transaction ends), then inserts with multi-row INSERTs (up to <see cref="EventRowsPerStatement"/>
    /// rows each) where EF Core sends one INSERT per row, and sets each row's
    /// <see cref="PipelineEventRecord.Position"/>. Call it as the transaction's last write: whoever
    /// takes the next positions waits for this transaction to end, so positions follow commit order
    /// (docs/architecture.md).
    /// </summary>
    public virtual async Task InsertEventsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<PipelineEventRecord> rows, CancellationToken cancellationToken)
    {
        if (rows.Count == 0)
        {
            return;
        }

        var position = await MoveCounterAsync(connection, transaction, rows.Count, cancellationToken) - rows.Count;
        for (var from = 0; from < rows.Count; from += EventRowsPerStatement)
        {
            var count = Math.Min(EventRowsPerStatement, rows.Count - from);
            await using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = InsertEventsSql(count);
            for (var i = 0; i < count; i++)
            {
                var row = rows[from + i];
                row.Position = ++position;
                AddParameter(command, "n" + i, position);
                AddParameter(command, "g" + i, row.PipelineId);
                AddParameter(command, "s" + i, row.Seq);
                AddParameter(command, "t" + i, row.Type);
                AddParameter(command, "at" + i, Instant(row.Timestamp));
                AddParameter(command, "p" + i, row.Payload);
                AddParameter(command, "tn" + i, (object?)row.Tenant ?? DBNull.Value);
            }

            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>Moves the position counter by <paramref name="count"/> and returns its new value.</summary>
    protected async Task<long> MoveCounterAsync(DbConnection connection, DbTransaction transaction, long count, CancellationToken cancellationToken)
    {
        await using var counter = connection.CreateCommand();
        counter.Transaction = transaction;
        counter.CommandText = MoveCounterSql;
        AddParameter(counter, "count", count);
        AddParameter(counter, "counter", Internal.OutboxDelivery.PositionCounter);
        return Convert.ToInt64(await counter.ExecuteScalarAsync(cancellationToken)
            ?? throw new InvalidOperationException("The position counter's row is missing: the store's migrations were not applied."), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Positions the next committed, unpositioned event rows (<see cref="PositionEventsSql"/>) inside
    /// <paramref name="transaction"/> and returns them in position order. Only committed rows are
    /// seen, so a row whose transaction commits later gets a later position (docs/architecture.md).
    /// </summary>
    public async Task<List<PipelineEventRecord>> PositionEventsAsync(
        DbConnection connection, DbTransaction transaction, string lease, string owner, DateTimeOffset now, int limit, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = PositionEventsSql ?? throw new NotSupportedException($"{Kind} stores hold no rows without a position.");
        AddParameter(command, "lease", lease);
        AddParameter(command, "counter", Internal.OutboxDelivery.PositionCounter);
        AddParameter(command, "owner", owner);
        AddParameter(command, "now", Instant(now));
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

        if (PositionEventsFollowUpSql is { } followUp && rows.Count > 0)
        {
            await using var next = connection.CreateCommand();
            next.Transaction = transaction;
            next.CommandText = followUp;
            AddParameter(next, "count", (long)rows.Count);
            AddParameter(next, "counter", Internal.OutboxDelivery.PositionCounter);
            await next.ExecuteNonQueryAsync(cancellationToken);
        }

        rows.Sort((a, b) => a.Position!.Value.CompareTo(b.Position!.Value));
        return rows;
    }

    /// <summary>
    /// Every raw statement text the store sends in this dialect on <paramref name="model"/> (this
    /// dialect's EF Core model): its own (counter, positioning, event inserts of one row and of a full
    /// statement), a group's rows (<c>GroupRows</c>) and the event log's pages
    /// (<see cref="PipelineEventReader"/>), each built by the code that sends it. For checking a
    /// dialect's statements where its server cannot run (SQL Server's, with a T-SQL parser).
    /// </summary>
    public IEnumerable<string> Statements(Microsoft.EntityFrameworkCore.Metadata.IModel model) =>
    [
        MoveCounterSql,
        .. new[] { PositionEventsSql, PositionEventsFollowUpSql }.OfType<string>(),
        InsertEventsSql(1),
        InsertEventsSql(EventRowsPerStatement),
        .. Internal.GroupRows.Statements(model, this),
        .. PipelineEventReader.Statements(this),
    ];

    /// <summary>Adds parameter <paramref name="name"/> with <paramref name="value"/>, declared as this database wants it (<see cref="Declare"/>).</summary>
    public void AddParameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        Declare(parameter);
        command.Parameters.Add(parameter);
    }

    /// <summary>Declares a parameter whose value was just set, for every raw statement the store sends (this one's, the event log's, a group's rows).</summary>
    public virtual void Declare(DbParameter parameter)
    {
    }
}
