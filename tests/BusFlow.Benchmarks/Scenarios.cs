using System.Diagnostics;
using System.Text.Json;
using BusFlow.Contracts;
using BusFlow.Store;
using BusFlow.Store.Dialects;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;

namespace BusFlow.Benchmarks;

/// <summary>One repetition's figures. Rates are rows per second from the repetition's start.</summary>
/// <param name="Rows">Rows (events) of this repetition.</param>
/// <param name="Recorded">Rows/s until the last row was recorded (committed, or decided for the saga).</param>
/// <param name="Delivered">Rows/s until the outbox lease's delivered-up-to position covered the last row (null where nothing is delivered).</param>
/// <param name="Received">Rows/s until the bus subscriber received the last row (null where nothing is delivered).</param>
/// <param name="Drain">Store-direct only: rows/s the subscriber received once the writers had finished (events received after that instant over the time to the last one).</param>
public sealed record Measurement(long Rows, double Recorded, double? Delivered, double? Received, double? Drain = null)
{
    /// <summary>CPU and allocations during the repetition.</summary>
    public ResourceUse? Resources { get; init; }
}

/// <summary>The event rows the store-direct and raw scenarios write: the same columns and payloads for both.</summary>
public sealed class EventRows
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    private EventRows(PipelineEventRecord[] rows) => Rows = rows;

    public PipelineEventRecord[] Rows { get; }

    /// <summary><paramref name="count"/> StepProgress rows spread round robin over <paramref name="pipelines"/> pipelines, seq 1, 2, ... per pipeline.</summary>
    public static EventRows Create(int count, int pipelines)
    {
        var ids = Enumerable.Range(0, pipelines).Select(_ => NewId.NextGuid()).ToArray();
        var now = DateTimeOffset.UtcNow;
        var rows = new PipelineEventRecord[count];
        for (var i = 0; i < count; i++)
        {
            PipelineEvent e = new StepProgress
            {
                PipelineId = ids[i % pipelines],
                Seq = (i / pipelines) + 1,
                Timestamp = now,
                Definition = BenchHost.Pipeline,
                StepName = BenchHost.Pipeline,
                StepIndex = 0,
                Attempt = 1,
                Percent = i % 100,
                Message = "tick",
            };
            // Serialised as the store does it: through the base type, with its "type".
            rows[i] = new PipelineEventRecord
            {
                PipelineId = e.PipelineId,
                Seq = e.Seq,
                Type = e.EventType,
                Timestamp = e.Timestamp,
                Payload = JsonSerializer.Serialize(e, Json),
            };
        }

        return new EventRows(rows);
    }

    /// <summary>Runs <paramref name="write"/> over batches of <paramref name="batch"/> rows with <paramref name="writers"/> concurrent writers.</summary>
    public async Task WriteInBatches(int batch, int writers, Func<ArraySegment<PipelineEventRecord>, Task> write)
    {
        var next = -1;
        var batches = (Rows.Length + batch - 1) / batch;
        await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
        {
            int b;
            while ((b = Interlocked.Increment(ref next)) < batches)
            {
                var start = b * batch;
                await write(new ArraySegment<PipelineEventRecord>(Rows, start, Math.Min(batch, Rows.Length - start)));
            }
        })));
    }
}

/// <summary>The scenarios. Each returns one repetition's figures.</summary>
public static class Scenarios
{
    /// <summary>
    /// "pipelines": starts P pipelines at once; each runs one step that reports N progress events, so
    /// each yields N + 4 events (PipelineStarted, StepStarted, N x StepProgress, StepCompleted,
    /// PipelineCompleted), every one decided by a saga transition, recorded in busflow_events and
    /// delivered by the outbox to the bus subscriber.
    /// </summary>
    public static async Task<Measurement> Pipelines(BenchHost host, NpgsqlDataSource data, BenchSettings settings, int pipelines)
    {
        var baseId = await Scalar<long>(data, """SELECT coalesce(max("Id"), 0) FROM busflow_events""");
        host.Counter.Reset();
        var expected = (long)pipelines * (settings.ProgressPerStep + 4);
        var ids = Enumerable.Range(0, pipelines).Select(_ => NewId.NextGuid()).ToList();
        var wall = DateTimeOffset.UtcNow;
        var start = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (id, ct) =>
            await host.Bus.Publish(new StartPipeline { PipelineId = id, Definition = BenchHost.Pipeline }, ct));

        await WaitUntil(() => host.Counter.Completed >= pipelines && host.Counter.Count >= expected, settings.Timeout,
            () => $"{host.Counter.Completed}/{pipelines} pipelines completed, {host.Counter.Count}/{expected} events received", host.Stopping);
        var received = Stopwatch.GetElapsedTime(start, host.Counter.LastReceived);
        var log = await WaitForDelivery(data, baseId, expected, settings.Timeout, host.Stopping);
        return new Measurement(
            log.Rows,
            log.Rows / (log.LastRecorded - wall).TotalSeconds,
            log.Rows / (log.LastDelivered - wall).TotalSeconds,
            host.Counter.Count / received.TotalSeconds);
    }

    /// <summary>
    /// "outbox": isolates the outbox. Writers add StepProgress rows one transaction per batch, the way
    /// a transition with that many events writes them (StoreDialect.InsertEventsAsync, the multi-row
    /// INSERT every group commit uses for its events); BusFlow's OutboxDelivery,
    /// running in the host, positions them and publishes them to RabbitMQ.
    /// </summary>
    public static async Task<Measurement> Outbox(BenchHost host, NpgsqlDataSource data, BenchSettings settings, EventRows rows)
    {
        var baseId = await Scalar<long>(data, """SELECT coalesce(max("Id"), 0) FROM busflow_events""");
        host.Counter.Reset();
        var wall = DateTimeOffset.UtcNow;
        var start = Stopwatch.GetTimestamp();
        await rows.WriteInBatches(settings.Batch, settings.Writers, async batch =>
        {
            await using var db = await host.Databases.CreateDbContextAsync();
            await using var transaction = await db.Database.BeginTransactionAsync();
            await PostgresDialect.Instance.InsertEventsAsync(db.Database.GetDbConnection(), transaction.GetDbTransaction(), batch, CancellationToken.None);
            await transaction.CommitAsync();
        });
        var recorded = Stopwatch.GetElapsedTime(start);
        var receivedWhenRecorded = host.Counter.Count;
        long expected = rows.Rows.Length;
        await WaitUntil(() => host.Counter.Count >= expected, settings.Timeout, () => $"{host.Counter.Count}/{expected} events received", host.Stopping);
        var received = Stopwatch.GetElapsedTime(start, host.Counter.LastReceived);
        var log = await WaitForDelivery(data, baseId, expected, settings.Timeout, host.Stopping);
        return new Measurement(
            log.Rows,
            log.Rows / recorded.TotalSeconds,
            log.Rows / (log.LastDelivered - wall).TotalSeconds,
            host.Counter.Count / received.TotalSeconds,
            received > recorded ? (host.Counter.Count - receivedWhenRecorded) / (received - recorded).TotalSeconds : null);
    }

    /// <summary>
    /// "outbox-batched": "outbox" with <c>EventPublishing = Batched</c> (one PipelineEventBatch message per
    /// lane and round instead of one message per event); the subscriber, a PipelineEventsConsumer, counts
    /// the events inside. The setting is read by every lane before each publish, so it is switched in place.
    /// </summary>
    public static async Task<Measurement> OutboxBatched(BenchHost host, NpgsqlDataSource data, BenchSettings settings, EventRows rows)
    {
        host.Store.EventPublishing = EventPublishMode.Batched;
        try
        {
            // The same shape of rows under other pipeline ids: "outbox" already wrote these ids and seqs.
            return await Outbox(host, data, settings, EventRows.Create(rows.Rows.Length, settings.Spread));
        }
        finally
        {
            host.Store.EventPublishing = EventPublishMode.Individual;
        }
    }

    /// <summary>
    /// "broker": the same StepProgress events published straight to RabbitMQ through the host's bus,
    /// the way OutboxDelivery publishes (MessageId set, DeliveryParallelism at once), with no
    /// database: what the broker and the subscriber take on this machine.
    /// </summary>
    public static async Task<Measurement> Broker(BenchHost host, BenchSettings settings, EventRows rows)
    {
        host.Counter.Reset();
        var events = rows.Rows.Select(r => JsonSerializer.Deserialize<PipelineEvent>(r.Payload, JsonSerializerOptions.Web)!).ToArray();
        var start = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(
            Enumerable.Range(0, events.Length),
            new ParallelOptions { MaxDegreeOfParallelism = host.Store.DeliveryParallelism },
            async (i, ct) =>
            {
                var e = events[i] with { Position = i + 1 };
                var messageId = NewId.NextGuid();
                await host.Bus.Publish(e, e.GetType(), Pipe.Execute<PublishContext>(c => c.MessageId = messageId), ct);
            });
        var published = Stopwatch.GetElapsedTime(start);
        long expected = events.Length;
        await WaitUntil(() => host.Counter.Count >= expected, settings.Timeout, () => $"{host.Counter.Count}/{expected} events received", host.Stopping);
        var received = Stopwatch.GetElapsedTime(start, host.Counter.LastReceived);
        return new Measurement(expected, expected / published.TotalSeconds, null, expected / received.TotalSeconds);
    }

    /// <summary>The scratch table of the raw scenarios: busflow_events' columns, identity, indexes and constraints.</summary>
    public static async Task CreateScratchTable(NpgsqlDataSource data)
    {
        await using var command = data.CreateCommand("""CREATE TABLE bench_raw_events (LIKE busflow_events INCLUDING ALL)""");
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>"raw-insert": one multi-row INSERT per batch (one transaction), the same rows, columns and writers.</summary>
    public static async Task<Measurement> RawInsert(NpgsqlDataSource data, BenchSettings settings, EventRows rows)
    {
        await Truncate(data);
        var start = Stopwatch.GetTimestamp();
        await rows.WriteInBatches(settings.Batch, settings.Writers, async batch =>
        {
            await using var connection = await data.OpenConnectionAsync();
            await using var command = new NpgsqlCommand(InsertText(batch.Count), connection);
            foreach (var row in batch)
            {
                command.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid, TypedValue = row.PipelineId });
                command.Parameters.Add(new NpgsqlParameter<long> { NpgsqlDbType = NpgsqlDbType.Bigint, TypedValue = row.Seq });
                command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Varchar, TypedValue = row.Type });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { NpgsqlDbType = NpgsqlDbType.TimestampTz, TypedValue = row.Timestamp });
                command.Parameters.Add(new NpgsqlParameter<string> { NpgsqlDbType = NpgsqlDbType.Text, TypedValue = row.Payload });
            }

            await command.ExecuteNonQueryAsync();
        });
        var elapsed = Stopwatch.GetElapsedTime(start);
        var count = await Scalar<long>(data, "SELECT count(*) FROM bench_raw_events");
        return new Measurement(count, count / elapsed.TotalSeconds, null, null);
    }

    /// <summary>"raw-copy": one binary COPY per batch (one transaction), the same rows, columns and writers.</summary>
    public static async Task<Measurement> RawCopy(NpgsqlDataSource data, BenchSettings settings, EventRows rows)
    {
        await Truncate(data);
        var start = Stopwatch.GetTimestamp();
        await rows.WriteInBatches(settings.Batch, settings.Writers, async batch =>
        {
            await using var connection = await data.OpenConnectionAsync();
            await using var writer = await connection.BeginBinaryImportAsync(
                """COPY bench_raw_events ("PipelineId", "Seq", "Type", "Timestamp", "Payload") FROM STDIN (FORMAT BINARY)""");
            foreach (var row in batch)
            {
                await writer.StartRowAsync();
                await writer.WriteAsync(row.PipelineId, NpgsqlDbType.Uuid);
                await writer.WriteAsync(row.Seq, NpgsqlDbType.Bigint);
                await writer.WriteAsync(row.Type, NpgsqlDbType.Varchar);
                await writer.WriteAsync(row.Timestamp, NpgsqlDbType.TimestampTz);
                await writer.WriteAsync(row.Payload, NpgsqlDbType.Text);
            }

            await writer.CompleteAsync();
        });
        var elapsed = Stopwatch.GetElapsedTime(start);
        var count = await Scalar<long>(data, "SELECT count(*) FROM bench_raw_events");
        return new Measurement(count, count / elapsed.TotalSeconds, null, null);
    }

    private static string InsertText(int rows) =>
        """INSERT INTO bench_raw_events ("PipelineId", "Seq", "Type", "Timestamp", "Payload") VALUES """
        + string.Join(", ", Enumerable.Range(0, rows).Select(r => $"(${(5 * r) + 1}, ${(5 * r) + 2}, ${(5 * r) + 3}, ${(5 * r) + 4}, ${(5 * r) + 5})"));

    private static async Task Truncate(NpgsqlDataSource data)
    {
        await using var command = data.CreateCommand("TRUNCATE bench_raw_events RESTART IDENTITY");
        await command.ExecuteNonQueryAsync();
    }

    private sealed record LogFigures(long Rows, DateTimeOffset LastRecorded, DateTimeOffset LastDelivered);

    /// <summary>
    /// Waits until the repetition's rows in busflow_events are all positioned and the outbox lease's
    /// <c>DeliveredUpTo</c> covers them (every one confirmed by the broker), polling every 10 ms; returns
    /// when the last row was recorded and when the watermark was first seen covering them.
    /// </summary>
    private static async Task<LogFigures> WaitForDelivery(NpgsqlDataSource data, long baseId, long expected, TimeSpan timeout, CancellationToken stopping)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            await using var command = data.CreateCommand("""
                SELECT count(*), count(e."Position"), max(e."Timestamp"), coalesce(max(e."Position"), 0),
                       (SELECT "DeliveredUpTo" FROM busflow_leases WHERE "Name" = 'outbox')
                FROM busflow_events e WHERE e."Id" > $1
                """);
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = baseId });
            await using var reader = await command.ExecuteReaderAsync(stopping);
            await reader.ReadAsync(stopping);
            var rows = reader.GetInt64(0);
            var positioned = reader.GetInt64(1);
            var deliveredUpTo = reader.GetInt64(4);
            if (rows >= expected && positioned == rows && deliveredUpTo >= reader.GetInt64(3))
            {
                return new LogFigures(rows, reader.GetFieldValue<DateTimeOffset>(2), DateTimeOffset.UtcNow);
            }

            if (Stopwatch.GetTimestamp() > until)
            {
                throw new TimeoutException($"busflow_events: {rows}/{expected} rows recorded, {positioned} positioned, delivered up to position {deliveredUpTo}");
            }

            await Task.Delay(10, stopping);
        }
    }

    private static async Task WaitUntil(Func<bool> condition, TimeSpan timeout, Func<string> describe, CancellationToken stopping)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                throw new TimeoutException($"Timed out after {timeout.TotalSeconds:0} s: {describe()}");
            }

            await Task.Delay(5, stopping);
        }
    }

    private static async Task<T> Scalar<T>(NpgsqlDataSource data, string sql)
    {
        await using var command = data.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
