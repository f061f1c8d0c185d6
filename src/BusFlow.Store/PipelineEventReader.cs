using BusFlow.Contracts;
using BusFlow.Store.Dialects;
using BusFlow.Store.Internal;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace BusFlow.Store;

/// <summary>Replay queries over the event log, for subscribers that resume or fell behind.</summary>
public sealed partial class PipelineEventReader(IDbContextFactory<BusFlowDbContext> databases, BusFlowStoreOptions options, ILogger<PipelineEventReader> logger) : IPipelineEventLog
{
    private readonly StoreDialect _dialect = options.Dialect;

    private readonly string _pipelineAfterSeq = PipelineAfterSeq(options.Dialect);

    private readonly string _allAfterPosition = AllAfterPosition(options.Dialect);

    /// <summary>One pipeline's events with seq greater than <paramref name="afterSeq"/>, in seq order.</summary>
    public async Task<IReadOnlyList<PipelineEvent>> ReadPipelineAsync(Guid pipelineId, long afterSeq, int limit, CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        var rows = await db.Events.AsNoTracking()
            .Where(e => e.PipelineId == pipelineId && e.Seq > afterSeq)
            .OrderBy(e => e.Seq)
            .Take(limit)
            .ToListAsync(cancellationToken);
        return Read(rows);
    }

    /// <summary>
    /// Every pipeline's events with position greater than <paramref name="afterPosition"/>, in
    /// position order. Only positioned rows are read, and positions are given after commit in commit
    /// order, so an event that commits late gets a later position instead of being skipped.
    /// </summary>
    public async Task<IReadOnlyList<PipelineEvent>> ReadAllAsync(long afterPosition, int limit, CancellationToken cancellationToken = default) =>
        (await ReadAllPageAsync(afterPosition, limit, cancellationToken)).Events;

    /// <summary>
    /// One pipeline's positioned events after <paramref name="afterSeq"/>, for subscribers: every event
    /// they get carries its position. <see cref="ReplayPage.Last"/> is the last seq read, unreadable rows included.
    /// </summary>
    public async Task<ReplayPage> ReadPipelinePageAsync(Guid pipelineId, long afterSeq, int limit, CancellationToken cancellationToken = default) =>
        Deserialised(await ReadPipelineStoredAsync(pipelineId, afterSeq, limit, cancellationToken));

    /// <summary>
    /// Every pipeline's events after <paramref name="afterPosition"/> in position order;
    /// <see cref="ReplayPage.Last"/> is the last position read, unreadable rows included.
    /// </summary>
    public async Task<ReplayPage> ReadAllPageAsync(long afterPosition, int limit, CancellationToken cancellationToken = default) =>
        Deserialised(await ReadAllStoredAsync(afterPosition, limit, cancellationToken));

    /// <summary>
    /// One pipeline's positioned events after <paramref name="afterSeq"/> as stored (routing columns and
    /// the recorded JSON as UTF-8, not deserialised), for replay to subscribers that can take the bytes as they are.
    /// </summary>
    public Task<StoredEventPage> ReadPipelineStoredAsync(Guid pipelineId, long afterSeq, int limit, CancellationToken cancellationToken = default) =>
        ReadStoredPageAsync(new PageQuery(_pipelineAfterSeq, [("pipeline", pipelineId)], BySeq: true), afterSeq, limit, cancellationToken);

    /// <summary>Every pipeline's events after <paramref name="afterPosition"/> in position order, as stored.</summary>
    public Task<StoredEventPage> ReadAllStoredAsync(long afterPosition, int limit, CancellationToken cancellationToken = default) =>
        ReadStoredPageAsync(new PageQuery(_allAfterPosition, [], BySeq: false), afterPosition, limit, cancellationToken);

    /// <summary>
    /// The events after <paramref name="afterPosition"/> in position order, as stored, of the rows that
    /// pass <paramref name="filter"/> in SQL: the tenant and the type from their columns, the tags
    /// from the stored JSON inside the database, so rows that do not pass are never sent to this
    /// process. <see cref="StoredEventPage.Last"/> is the last position returned, or, for a page that
    /// is not full, the store's last position before the read: every row up to it was looked at, so
    /// a reader's cursor moves past the rows that did not pass, whatever their columns say.
    /// </summary>
    public Task<StoredEventPage> ReadAllStoredAsync(long afterPosition, int limit, StoredEventFilter filter, CancellationToken cancellationToken = default) =>
        filter.IsEmpty
            ? ReadAllStoredAsync(afterPosition, limit, cancellationToken)
            : ReadStoredPageAsync(Filtered(filter, _dialect), afterPosition, limit, cancellationToken);

    // Plain SQL, limited in the dialect's way, read with the provider's data reader: where it can, the
    // payload column's UTF-8 bytes are taken as they are, where EF Core would decode each into a .NET
    // string that replay then encodes back to UTF-8 (replay of long histories is bound by per-row CPU;
    // docs/performance.md).
    private const string Columns = "\"PipelineId\", \"Seq\", \"Position\", \"Type\", \"Payload\", \"Tenant\"";

    private static string PipelineAfterSeq(StoreDialect dialect) =>
        dialect.Limited(Columns, """FROM busflow_events WHERE "PipelineId" = @pipeline AND "Seq" > @after AND "Position" IS NOT NULL""", "\"Seq\"");

    private static string AllAfterPosition(StoreDialect dialect) => dialect.Limited(Columns, """FROM busflow_events WHERE "Position" > @after""", "\"Position\"");

    /// <summary>Where a filtered page looked up to: read before the page (see <see cref="ReadStoredPageAsync"/>).</summary>
    private const string LastPositionSql = """SELECT "LastPosition" FROM busflow_leases WHERE "Name" = @counter""";

    /// <summary>
    /// Every statement text this reader sends in <paramref name="dialect"/>: the pages by seq and by
    /// position, the position read before a filtered page, and a filtered page with a tenant, types
    /// and two tags. For checking a dialect's statements without its server.
    /// </summary>
    internal static IEnumerable<string> Statements(StoreDialect dialect) =>
    [
        PipelineAfterSeq(dialect),
        AllAfterPosition(dialect),
        LastPositionSql,
        Filtered(new StoredEventFilter("tenant", ["StepCompleted", "PipelineCompleted"], new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" }), dialect).Sql,
    ];

    /// <summary>
    /// A page's SQL and its parameters besides @after and @limit; whether it goes by seq (one
    /// pipeline) or by position; and the tenant it names, if any (every row's, not read per row).
    /// A filtered query skips rows, so the page's end is where it looked up to (see <see cref="ReadAllStoredAsync(long, int, StoredEventFilter, CancellationToken)"/>).
    /// </summary>
    private sealed record PageQuery(string Sql, List<(string Name, object Value)> Parameters, bool BySeq, bool Filtered = false, string? Tenant = null);

    /// <summary>The query of a filtered page after a position.</summary>
    private static PageQuery Filtered(StoredEventFilter filter, StoreDialect dialect)
    {
        var sql = new System.Text.StringBuilder("FROM busflow_events WHERE ");
        var parameters = new List<(string, object)>();
        if (filter.Tenant is { } tenant)
        {
            sql.Append("\"Tenant\" = @tenant AND ");
            parameters.Add(("tenant", tenant));
        }

        sql.Append("\"Position\" > @after");
        if (filter.Types is { Count: > 0 } types)
        {
            sql.Append(" AND \"Type\" IN (").AppendJoin(", ", types.Select((_, i) => "@ty" + i)).Append(')');
            parameters.AddRange(types.Select((type, i) => ("ty" + i, (object)type)));
        }

        if (filter.Tags is { Count: > 0 } tags)
        {
            var i = 0;
            foreach (var (key, value) in tags)
            {
                // Every given tag with its value, from the stored JSON parsed by the database.
                sql.Append(" AND ").Append(dialect.TagCondition("@tk" + i, "@tv" + i));
                parameters.Add(("tk" + i, key));
                parameters.Add(("tv" + i, value));
                i++;
            }
        }

        return new PageQuery(dialect.Limited(Columns, sql.ToString(), "\"Position\""), parameters, BySeq: false, Filtered: true, filter.Tenant);
    }

    /// <summary>A page after a seq or a position, as <paramref name="query"/> says.</summary>
    private async Task<StoredEventPage> ReadStoredPageAsync(PageQuery query, long after, int limit, CancellationToken cancellationToken)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        // Opened through EF, so the connection interceptors run, and closed as soon as the page is read.
        await db.Database.OpenConnectionAsync(cancellationToken);
        var payloads = new PayloadBuffers();
        try
        {
            var lookedUpTo = 0L;
            if (query.Filtered)
            {
                // Read first: positions follow commit order, so every row up to it has committed and
                // is seen by the query that follows.
                await using var head = db.Database.GetDbConnection().CreateCommand();
                head.CommandText = LastPositionSql;
                _dialect.AddParameter(head, "counter", Internal.OutboxDelivery.PositionCounter);
                lookedUpTo = Convert.ToInt64(await head.ExecuteScalarAsync(cancellationToken) ?? 0L, System.Globalization.CultureInfo.InvariantCulture);
            }

            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.CommandText = query.Sql;
            _dialect.AddParameter(command, "after", after);
            _dialect.AddParameter(command, "limit", limit);
            foreach (var (name, value) in query.Parameters)
            {
                _dialect.AddParameter(command, name, value);
            }

            var rows = new List<StoredEvent>(limit);
            var typeBytes = new byte[64];
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                // Npgsql copies a text column's bytes and characters straight from its row buffer;
                // Microsoft.Data.Sqlite serves GetBytes and GetChars through a stream it sets up per
                // call, dearer than the string and array it hands out.
                var inPlace = _dialect.ReadsTextInPlace;
                while (await reader.ReadAsync(cancellationToken))
                {
                    rows.Add(inPlace
                        ? new StoredEvent(reader.GetGuid(0), reader.GetInt64(1), reader.GetInt64(2), EventTypeNames.Read(reader, 3, typeBytes), payloads.Read(reader, 4), ReadTenant(reader, query.Tenant))
                        : new StoredEvent(reader.GetGuid(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetString(3), _dialect.TextBytes(reader, 4), ReadTenant(reader, query.Tenant)));
                }
            }

            var last = rows.Count == 0 ? after : query.BySeq ? rows[^1].Seq : rows[^1].Position;
            if (query.Filtered && rows.Count < limit)
            {
                last = Math.Max(last, lookedUpTo);
            }

            return new StoredEventPage(rows, last, payloads.Return);
        }
        catch
        {
            payloads.Return();
            throw;
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>The row's tenant: the one asked for when the query named it (no string per row), else the column.</summary>
    private static string? ReadTenant(System.Data.Common.DbDataReader reader, string? asked) =>
        asked ?? (reader.IsDBNull(5) ? null : reader.GetString(5));

    /// <summary>Logs a stored event this version cannot read (it is skipped).</summary>
    private void Unreadable(StoredEvent e) => LogUnreadableStored(logger, e.Position, e.Type, e.PipelineId);

    /// <summary>The highest position given so far (0 when none).</summary>
    public async Task<long> LastPositionAsync(CancellationToken cancellationToken = default)
    {
        await using var db = await databases.CreateDbContextAsync(cancellationToken);
        return await db.Events.MaxAsync(e => e.Position, cancellationToken) ?? 0;
    }

    /// <summary>The page's events read back; rows this version cannot read are logged and left out.</summary>
    private ReplayPage Deserialised(StoredEventPage page)
    {
        var events = new List<PipelineEvent>(page.Events.Count);
        foreach (var stored in page.Events)
        {
            if (stored.Read() is { } e)
            {
                events.Add(e);
            }
            else
            {
                Unreadable(stored);
            }
        }

        page.Release();
        return new ReplayPage(events, page.Last, page.RowsRead);
    }

    private List<PipelineEvent> Read(List<PipelineEventRecord> rows)
    {
        var events = new List<PipelineEvent>(rows.Count);
        foreach (var row in rows)
        {
            if (PipelineStateMap.Read(row) is { } e)
            {
                events.Add(e);
            }
            else
            {
                LogUnreadable(logger, row.Id, row.Type, row.PipelineId);
            }
        }

        return events;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event at position {Position} ({Type}) of pipeline {PipelineId} cannot be read by this version; skipped on replay")]
    private static partial void LogUnreadableStored(ILogger logger, long position, string type, Guid pipelineId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Event row {RowId} ({Type}) of pipeline {PipelineId} cannot be read by this version; skipped on replay")]
    private static partial void LogUnreadable(ILogger logger, long rowId, string type, Guid pipelineId);
}
