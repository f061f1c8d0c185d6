using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using BusFlow.Contracts;
using MassTransit;
using Npgsql;
using NpgsqlTypes;

namespace BusFlow.Benchmarks;

/// <summary>
/// "sketch": NOT BusFlow's code. A sketch of the delivery loop proposed in docs/performance.md, run
/// on a copy of busflow_events (bench_sketch_events) so it never races BusFlow's own OutboxDelivery:
/// (1) one statement gives the next batch of unpositioned rows their positions (under a counter row
/// lock, in row order) and returns them, instead of loading tracked entities and updating each row;
/// (2) publishing never waits for a batch: rows flow into <c>lanes</c> partitioned by pipeline id
/// (each lane publishes its rows in order, so a pipeline's events keep their order) while the next
/// batch is positioned; (3) a batch is marked delivered, by position range, once all of its rows
/// were confirmed. Writers use the same rows, batches and concurrency as the "outbox" scenario, as
/// multi-row INSERTs (EF cannot map a second table of the same entity).
/// </summary>
public static class DeliverySketch
{
    public static async Task CreateTables(NpgsqlDataSource data)
    {
        await using var command = data.CreateCommand("""
            CREATE TABLE bench_sketch_events (LIKE busflow_events INCLUDING ALL);
            CREATE TABLE bench_sketch_counter (last bigint NOT NULL);
            INSERT INTO bench_sketch_counter VALUES (0);
            """);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task<Measurement> Run(BenchHost host, NpgsqlDataSource data, BenchSettings settings, EventRows rows, int lanes)
    {
        await using (var reset = data.CreateCommand("TRUNCATE bench_sketch_events; UPDATE bench_sketch_counter SET last = 0;"))
        {
            await reset.ExecuteNonQueryAsync();
        }

        host.Counter.Reset();
        var batchSize = host.Store.DeliveryBatchSize;
        long expected = rows.Rows.Length;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(host.Stopping);
        stop.CancelAfter(settings.Timeout);
        var wall = DateTimeOffset.UtcNow;
        var start = Stopwatch.GetTimestamp();
        var deliveredAt = DateTimeOffset.MinValue;
        var delivered = 0L;
        long positionTicks = 0, markTicks = 0, rounds = 0, emptyRounds = 0;

        // Lanes: one ordered publisher each. Marking: batches in position order, once fully confirmed.
        var channels = Enumerable.Range(0, lanes).Select(_ => Channel.CreateBounded<(PipelineEvent Event, Batch Batch)>(batchSize)).ToArray();
        var toMark = Channel.CreateBounded<Batch>(4);
        var publishers = channels.Select(c => Task.Run(async () =>
        {
            await foreach (var (e, batch) in c.Reader.ReadAllAsync(stop.Token))
            {
                var messageId = NewId.NextGuid();
                await host.Bus.Publish(e, e.GetType(), Pipe.Execute<PublishContext>(p => p.MessageId = messageId), stop.Token);
                batch.Confirmed();
            }
        })).ToArray();
        var marker = Task.Run(async () =>
        {
            await foreach (var batch in toMark.Reader.ReadAllAsync(stop.Token))
            {
                await batch.AllConfirmed.WaitAsync(stop.Token);
                var markStart = Stopwatch.GetTimestamp();
                await using var mark = data.CreateCommand("""UPDATE bench_sketch_events SET "DeliveredAt" = $1 WHERE "Position" BETWEEN $2 AND $3""");
                var now = DateTimeOffset.UtcNow;
                mark.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now });
                mark.Parameters.Add(new NpgsqlParameter<long> { TypedValue = batch.From });
                mark.Parameters.Add(new NpgsqlParameter<long> { TypedValue = batch.To });
                delivered += await mark.ExecuteNonQueryAsync(stop.Token);
                markTicks += Stopwatch.GetTimestamp() - markStart;
                deliveredAt = now;
                if (delivered >= expected)
                {
                    return;
                }
            }
        });
        var deliverer = Task.Run(async () =>
        {
            var positioned = 0L;
            while (positioned < expected)
            {
                var positionStart = Stopwatch.GetTimestamp();
                var batch = await PositionNext(data, batchSize, stop.Token);
                positionTicks += Stopwatch.GetTimestamp() - positionStart;
                rounds++;
                if (batch.Rows.Count == 0)
                {
                    emptyRounds++;
                    await Task.Delay(5, stop.Token); // a real loop would wait for the commit signal
                    continue;
                }

                positioned += batch.Rows.Count;
                await toMark.Writer.WriteAsync(batch, stop.Token);
                foreach (var (pipelineId, e) in batch.Rows)
                {
                    var lane = Lane(pipelineId, lanes);
                    await channels[lane].Writer.WriteAsync((e, batch), stop.Token);
                }
            }
        });

        await rows.WriteInBatches(settings.Batch, settings.Writers, async batch =>
        {
            await using var connection = await data.OpenConnectionAsync();
            await using var command = new NpgsqlCommand(
                """INSERT INTO bench_sketch_events ("PipelineId", "Seq", "Type", "Timestamp", "Payload") VALUES """
                + string.Join(", ", Enumerable.Range(0, batch.Count).Select(r => $"(${(5 * r) + 1}, ${(5 * r) + 2}, ${(5 * r) + 3}, ${(5 * r) + 4}, ${(5 * r) + 5})")), connection);
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
        var recorded = Stopwatch.GetElapsedTime(start);
        var recordedAt = wall + recorded;

        await Task.WhenAll(deliverer, marker);
        foreach (var c in channels)
        {
            c.Writer.Complete();
        }

        await Task.WhenAll(publishers);
        while (host.Counter.Count < expected)
        {
            await Task.Delay(5, stop.Token);
        }

        var received = Stopwatch.GetElapsedTime(start, host.Counter.LastReceived);
        Console.WriteLine(System.FormattableString.Invariant(
            $"      sketch: {rounds} position rounds ({emptyRounds} empty), {positionTicks * 1000.0 / Stopwatch.Frequency / Math.Max(1, rounds - emptyRounds):0.0} ms each; marking {markTicks * 1000.0 / Stopwatch.Frequency:0} ms in all"));
        await using var late = data.CreateCommand("""SELECT count(*) FROM bench_sketch_events WHERE "DeliveredAt" > $1""");
        late.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = recordedAt });
        var drained = (long)(await late.ExecuteScalarAsync(stop.Token))!;
        return new Measurement(
            expected,
            expected / recorded.TotalSeconds,
            expected / (deliveredAt - wall).TotalSeconds,
            host.Counter.Count / received.TotalSeconds,
            deliveredAt > recordedAt ? drained / (deliveredAt - recordedAt).TotalSeconds : null);
    }

    /// <summary>
    /// The lane of a pipeline. Hashes all 16 bytes: NewId's sequential ids differ in few bits, and
    /// Guid.GetHashCode() modulo a small number puts most of them in a few lanes.
    /// </summary>
    private static int Lane(Guid pipelineId, int lanes)
    {
        Span<byte> bytes = stackalloc byte[16];
        pipelineId.TryWriteBytes(bytes);
        var hash = new HashCode();
        hash.AddBytes(bytes);
        return (int)((uint)hash.ToHashCode() % (uint)lanes);
    }

    /// <summary>One round trip: positions the next rows in row order under the counter's row lock and returns them.</summary>
    private static async Task<Batch> PositionNext(NpgsqlDataSource data, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await data.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            WITH counter AS (SELECT last FROM bench_sketch_counter FOR UPDATE),
            fresh AS (SELECT "Id" FROM bench_sketch_events WHERE "Position" IS NULL ORDER BY "Id" LIMIT $1 FOR UPDATE),
            numbered AS (SELECT "Id", (SELECT last FROM counter) + row_number() OVER (ORDER BY "Id") AS position FROM fresh),
            moved AS (UPDATE bench_sketch_counter SET last = last + (SELECT count(*) FROM numbered))
            UPDATE bench_sketch_events e SET "Position" = n.position FROM numbered n WHERE e."Id" = n."Id"
            RETURNING e."Position", e."PipelineId", e."Payload"
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        var rows = new List<(long Position, Guid PipelineId, string Payload)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((reader.GetInt64(0), reader.GetGuid(1), reader.GetString(2)));
            }
        }

        await transaction.CommitAsync(cancellationToken);
        rows.Sort((a, b) => a.Position.CompareTo(b.Position));
        var events = rows.Select(r => (r.PipelineId, JsonSerializer.Deserialize<PipelineEvent>(r.Payload, JsonSerializerOptions.Web)! with { Position = r.Position })).ToList();
        return new Batch(events, rows.Count == 0 ? 0 : rows[0].Position, rows.Count == 0 ? 0 : rows[^1].Position);
    }

    private sealed class Batch(List<(Guid PipelineId, PipelineEvent Event)> rows, long from, long to)
    {
        private readonly TaskCompletionSource _all = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _pending = rows.Count;

        public List<(Guid PipelineId, PipelineEvent Event)> Rows { get; } = rows;

        public long From { get; } = from;

        public long To { get; } = to;

        public Task AllConfirmed => _all.Task;

        public void Confirmed()
        {
            if (Interlocked.Decrement(ref _pending) == 0)
            {
                _all.TrySetResult();
            }
        }
    }
}
