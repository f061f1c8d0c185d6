using System.Collections.Concurrent;
using System.Data.Common;
using BusFlow.Store.Dialects;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata;

namespace BusFlow.Store.Internal;

/// <summary>
/// Writes the rows a group commit's context tracks in the shapes every transition produces (new
/// pipelines, pipeline updates checked on their original <see cref="PipelineState.Version"/>, a
/// map's new and changed item rows, new inbox and outbox rows, outbox rows marked delivered) with plain statements instead of EF Core's
/// SaveChanges, which built, for every group, one command per row with its SQL text, parameter
/// objects and modification records (a third of the hot path's allocations, a tenth of its CPU in
/// memory; docs/performance.md). The statements come from EF Core's model (table, column names
/// and value converters), so the model stays the one description of the tables, except the two
/// PostgreSQL statements that write a group's inbox rows and delivered marks from arrays, which
/// name their columns (a new inbox column must be added there too). On PostgreSQL a
/// group's statements go in one batch (one round trip); on SQLite, in process, one prepared
/// command per shape is executed per row. Written entries are detached; anything else the context
/// tracks is left to SaveChanges. Failures surface as EF Core's own exceptions (a stale version as
/// <see cref="DbUpdateConcurrencyException"/>, a duplicate key as <see cref="DbUpdateException"/>),
/// so callers handle them as before.
/// </summary>
internal static class GroupRows
{
    /// <summary>Statements by entity type, insert or update, and (updates) which columns they set: one bit per <see cref="Shape.Updatable"/> column.</summary>
    private static readonly ConcurrentDictionary<(IEntityType Type, bool Update, ulong Columns, StoreDialect Dialect), Shape> Shapes = new();

    public static async Task WriteAsync(BusFlowDbContext db, DbTransaction transaction, StoreDialect dialect, CancellationToken cancellationToken)
    {
        var statements = new List<Statement>();
        var written = new List<EntityEntry>();
        // Where the dialect can (PostgreSQL, from arrays), a group's inbox rows and delivered marks go
        // in one statement each: every statement costs the server its own execution, which on a
        // small machine was most of its work per row. SQLite, in process, runs one prepared
        // statement per row as cheaply.
        var combine = dialect.InsertInboxRowsSql is not null && dialect.MarkRowsDeliveredSql is not null;
        var inbox = new List<InboxRecord>();
        var delivered = new List<OutboxMessageRecord>();
        foreach (var entry in db.ChangeTracker.Entries())
        {
            switch (entry.Entity, entry.State)
            {
                case (InboxRecord row, EntityState.Added) when combine:
                    inbox.Add(row);
                    break;
                case (OutboxMessageRecord { DeliveredAt: not null } row, EntityState.Modified) when combine && IsDeliveredMark(entry):
                    delivered.Add(row);
                    break;
                case (PipelineState or WorkItemRecord or InboxRecord or OutboxMessageRecord, EntityState.Added):
                    statements.Add(Insert(entry, dialect));
                    break;
                case (PipelineState or WorkItemRecord, EntityState.Modified):
                    statements.Add(Update(entry, dialect));
                    break;
                case (OutboxMessageRecord row, EntityState.Modified) when IsDeliveredMark(entry):
                    statements.Add(new Statement(MarkDeliveredSql, [Value(entry.Property(nameof(OutboxMessageRecord.DeliveredAt)).Metadata, row.DeliveredAt, dialect), row.Id], Returns: null, Versioned: false));
                    break;
                default:
                    continue;
            }

            written.Add(entry);
        }

        if (inbox.Count > 0)
        {
            statements.Add(new Statement(dialect.InsertInboxRowsSql!, [inbox.Select(r => r.MessageId).ToArray(), inbox.Select(r => r.Consumer).ToArray(), inbox.Select(r => r.ReceivedAt.ToUniversalTime()).ToArray()], Returns: null, Versioned: false));
        }

        if (delivered.Count > 0)
        {
            statements.Add(new Statement(dialect.MarkRowsDeliveredSql!, [delivered.Select(r => r.Id).ToArray(), delivered.Select(r => r.DeliveredAt!.Value.ToUniversalTime()).ToArray()], Returns: null, Versioned: false));
        }

        if (statements.Count == 0)
        {
            return;
        }

        // The inserts that return their generated key first, so that their results come first.
        statements = [.. statements.OrderBy(s => s.Returns is null)];

        try
        {
            var connection = transaction.Connection!;
            if (connection.CanCreateBatch)
            {
                await ExecuteBatchAsync(connection, transaction, statements, dialect, cancellationToken);
            }
            else
            {
                await ExecuteOneByOneAsync(connection, transaction, statements, dialect, cancellationToken);
            }
        }
        catch (DbException ex)
        {
            throw new DbUpdateException("A group's rows could not be written: " + ex.Message, ex);
        }

        foreach (var entry in written)
        {
            entry.State = EntityState.Detached;
        }
    }

    private const string MarkDeliveredSql = """UPDATE busflow_outbox SET "DeliveredAt" = @p0 WHERE "Id" = @p1""";

    /// <summary>
    /// Every statement text this class sends for <paramref name="model"/> in <paramref name="dialect"/>:
    /// each written entity type's INSERT and its UPDATE of every column (the UPDATEs of fewer columns
    /// are the same statement with fewer assignments), the delivered mark, and the dialect's combined
    /// statements. For checking a dialect's statements without its server.
    /// </summary>
    internal static IEnumerable<string> Statements(IModel model, StoreDialect dialect)
    {
        foreach (var type in new[] { typeof(PipelineState), typeof(WorkItemRecord), typeof(InboxRecord), typeof(OutboxMessageRecord) }.Select(t => model.FindEntityType(t)!))
        {
            yield return Shape.Of(type, update: false, 0, dialect).Sql;
            yield return Shape.Of(type, update: true, ulong.MaxValue, dialect).Sql;
        }

        yield return MarkDeliveredSql;
        if (dialect.InsertInboxRowsSql is { } inbox)
        {
            yield return inbox;
        }

        if (dialect.MarkRowsDeliveredSql is { } delivered)
        {
            yield return delivered;
        }
    }

    /// <summary>An outbox row whose only change is being marked delivered.</summary>
    private static bool IsDeliveredMark(EntityEntry entry) =>
        entry.Properties.All(p => !p.IsModified || p.Metadata.Name == nameof(OutboxMessageRecord.DeliveredAt));

    private static Statement Insert(EntityEntry entry, StoreDialect dialect)
    {
        var shape = Shapes.GetOrAdd((entry.Metadata, false, 0, dialect), key => Shape.Of(key.Type, update: false, 0, key.Dialect));
        var values = shape.Columns.Select(p => Value(p, entry.Property(p.Name).CurrentValue, dialect)).ToArray();
        return new Statement(shape.Sql, values, shape.Generated is { } generated ? entry.Property(generated.Name) : null, Versioned: false);
    }

    private static Statement Update(EntityEntry entry, StoreDialect dialect)
    {
        // Only the columns that changed (a large input or the tags are not written again by every transition).
        var updatable = Shape.Updatable(entry.Metadata);
        var changed = 0UL;
        for (var i = 0; i < updatable.Length; i++)
        {
            if (i >= 64 || entry.Property(updatable[i].Name).IsModified)
            {
                changed |= 1UL << Math.Min(i, 63);
            }
        }

        var shape = Shapes.GetOrAdd((entry.Metadata, true, changed == 0 ? ulong.MaxValue : changed, dialect), key => Shape.Of(key.Type, update: true, key.Columns, key.Dialect));
        var values = shape.Columns.Select(p => Value(p, entry.Property(p.Name).CurrentValue, dialect))
            .Concat(shape.Keys.Select(p => Value(p, entry.Property(p.Name).OriginalValue, dialect)))
            .ToArray();
        return new Statement(shape.Sql, values, Returns: null, Versioned: true);
    }

    /// <summary>The value as the column stores it: through the property's converter (JSON columns, enums as text, SQLite's instants), instants as the dialect passes them.</summary>
    private static object Value(IProperty property, object? value, StoreDialect dialect)
    {
        if (value is null)
        {
            return DBNull.Value;
        }

        if (property.GetTypeMapping().Converter is { } converter)
        {
            value = converter.ConvertToProvider(value);
        }

        return value switch
        {
            null => DBNull.Value,
            DateTimeOffset instant => dialect.Instant(instant),
            _ => value,
        };
    }

    private static async Task ExecuteBatchAsync(DbConnection connection, DbTransaction transaction, List<Statement> statements, StoreDialect dialect, CancellationToken cancellationToken)
    {
        await using var batch = connection.CreateBatch();
        batch.Transaction = transaction;
        foreach (var statement in statements)
        {
            var command = batch.CreateBatchCommand();
            command.CommandText = statement.Sql;
            for (var i = 0; i < statement.Values.Length; i++)
            {
                var parameter = command.CreateParameter();
                parameter.ParameterName = "p" + i;
                parameter.Value = statement.Values[i];
                dialect.Declare(parameter);
                command.Parameters.Add(parameter);
            }

            batch.BatchCommands.Add(command);
        }

        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
        {
            // Only the inserts with a generated key return a row, one result each, in order.
            foreach (var statement in statements.Where(s => s.Returns is not null))
            {
                while (reader.FieldCount == 0 && await reader.NextResultAsync(cancellationToken))
                {
                }

                await reader.ReadAsync(cancellationToken);
                statement.Returns!.CurrentValue = reader.GetInt64(0);
                await reader.NextResultAsync(cancellationToken);
            }
        }

        for (var i = 0; i < statements.Count; i++)
        {
            if (statements[i].Versioned && batch.BatchCommands[i].RecordsAffected != 1)
            {
                throw StaleVersion();
            }
        }
    }

    private static async Task ExecuteOneByOneAsync(DbConnection connection, DbTransaction transaction, List<Statement> statements, StoreDialect dialect, CancellationToken cancellationToken)
    {
        var commands = new Dictionary<string, DbCommand>(StringComparer.Ordinal);
        try
        {
            foreach (var statement in statements)
            {
                if (!commands.TryGetValue(statement.Sql, out var command))
                {
                    command = connection.CreateCommand();
                    command.Transaction = transaction;
                    command.CommandText = statement.Sql;
                    for (var i = 0; i < statement.Values.Length; i++)
                    {
                        var parameter = command.CreateParameter();
                        parameter.ParameterName = "@p" + i;
                        command.Parameters.Add(parameter);
                    }

                    commands[statement.Sql] = command;
                }

                for (var i = 0; i < statement.Values.Length; i++)
                {
                    command.Parameters[i].Value = statement.Values[i];
                    dialect.Declare(command.Parameters[i]);
                }

                if (statement.Returns is { } generated)
                {
                    generated.CurrentValue = Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
                }
                else if (await command.ExecuteNonQueryAsync(cancellationToken) != 1 && statement.Versioned)
                {
                    throw StaleVersion();
                }
            }
        }
        finally
        {
            foreach (var command in commands.Values)
            {
                await command.DisposeAsync();
            }
        }
    }

    private static DbUpdateConcurrencyException StaleVersion() =>
        new("A pipeline changed since this transition read it (its Version moved); the transition is retried on the new state.");

    /// <summary>One row's statement: its SQL, its parameter values in order, the generated key it returns (if any), and whether it must change exactly one row.</summary>
    private sealed record Statement(string Sql, object[] Values, PropertyEntry? Returns, bool Versioned);

    /// <summary>An entity type's INSERT (generated key returned) or UPDATE (the columns chosen, checked on key and concurrency token) and its parameter order.</summary>
    private sealed class Shape
    {
        public required string Sql { get; init; }

        public required IProperty[] Columns { get; init; }

        public required IProperty[] Keys { get; init; }

        public IProperty? Generated { get; init; }

        /// <summary>The columns an UPDATE may set, in the order of the bits that choose them.</summary>
        public static IProperty[] Updatable(IEntityType type) => UpdatableColumns.GetOrAdd(type, t => [.. t.GetProperties().Where(p => !p.IsPrimaryKey())]);

        private static readonly ConcurrentDictionary<IEntityType, IProperty[]> UpdatableColumns = new();

        public static Shape Of(IEntityType type, bool update, ulong chosen, StoreDialect dialect)
        {
            var table = type.GetTableName()!;
            // An identity column (the outbox's Id); a Guid key is the caller's own.
            var generated = type.FindPrimaryKey()!.Properties.SingleOrDefault(p => p.ValueGenerated == ValueGenerated.OnAdd && p.ClrType == typeof(long));
            var properties = type.GetProperties().Where(p => p != generated).ToArray();
            string Column(IProperty p) => "\"" + p.GetColumnName() + "\"";
            if (!update)
            {
                var names = string.Join(", ", properties.Select(Column));
                var values = string.Join(", ", properties.Select((_, i) => "@p" + i));
                var sql = generated is null
                    ? $"INSERT INTO {table} ({names}) VALUES ({values})"
                    : dialect.InsertReturning(table, names, values, Column(generated));
                return new Shape { Sql = sql, Columns = properties, Keys = [], Generated = generated };
            }

            var keys = type.FindPrimaryKey()!.Properties.Concat(properties.Where(p => p.IsConcurrencyToken)).ToArray();
            // Columns past the 64th are always set (their bit is the last one).
            var columns = Updatable(type).Where((_, i) => (chosen & (1UL << Math.Min(i, 63))) != 0).ToArray();
            var set = string.Join(", ", columns.Select((p, i) => $"{Column(p)} = @p{i}"));
            var where = string.Join(" AND ", keys.Select((p, i) => $"{Column(p)} = @p{columns.Length + i}"));
            return new Shape { Sql = $"UPDATE {table} SET {set} WHERE {where}", Columns = columns, Keys = keys };
        }
    }
}
