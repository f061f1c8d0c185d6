using System.Buffers.Text;
using System.Data.Common;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using BusFlow.Contracts;
using BusFlow.Edge;
using BusFlow.Store;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using static BusFlow.Benchmarks.E2eReport;

namespace BusFlow.Benchmarks;

/// <summary>One replay: events (rows) read, seconds from the request to the last one, the rate, and CPU.</summary>
public sealed record ReplayRun(long Events, double Seconds, ResourceUse Resources)
{
    public double PerSecond => Events / Seconds;
}

/// <summary>
/// The seam the replay scenario seeds its history through: a pipeline's event rows written straight
/// into <c>busflow_events</c> with their positions given and marked delivered (as OutboxDelivery
/// leaves them), and the position counter's <c>LastPosition</c> moved past them, so BusFlow treats them
/// as a history it recorded and delivered. Payloads are the JSON the store writes
/// (<see cref="PipelineEventJson"/>, position 0 inside, as <c>StoreDecisionRecorder</c> records it).
/// </summary>
public static class EventHistory
{
    private const long SeqMarker = 987_654_321;

    /// <summary>Seeds <paramref name="count"/> StepProgress events of one pipeline, seq = position = 1..count, in one server-side INSERT ... SELECT.</summary>
    public static async Task SeedPostgresAsync(NpgsqlDataSource data, Guid pipelineId, int count)
    {
        await using var connection = await data.OpenConnectionAsync();
        await SeedAsync(
            connection,
            """
            INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload")
            SELECT g, @pipeline, g, 'StepProgress', @timestamp, replace(@template, @marker, '"seq":' || g)
            FROM generate_series(1, @count) AS g
            """,
            pipelineId,
            pipelineId,
            count,
            "VACUUM ANALYZE busflow_events");
    }

    /// <summary>The same history in a SQLite store, over a counting CTE.</summary>
    public static async Task SeedSqliteAsync(string connectionString, Guid pipelineId, int count)
    {
        await using var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync();
        await SeedAsync(
            connection,
            """
            WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < @count)
            INSERT INTO busflow_events ("Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload")
            SELECT x, @pipeline, x, 'StepProgress', @timestamp, replace(@template, @marker, '"seq":' || x) FROM g
            """,
            pipelineId,
            // As EF Core's SQLite provider stores them: a Guid as upper-case text.
            pipelineId.ToString().ToUpperInvariant(),
            count,
            "ANALYZE");
    }

    /// <summary>
    /// Runs the store's <paramref name="insert"/> of the history and moves the outbox lease past it in
    /// one transaction, as the delivery leaves delivered rows, then refreshes the planner's statistics.
    /// </summary>
    private static async Task SeedAsync(DbConnection connection, string insert, Guid pipelineId, object storedPipelineId, int count, string analyze)
    {
        var timestamp = DateTimeOffset.UtcNow;
        await using var transaction = await connection.BeginTransactionAsync();
        await Execute(connection, transaction, insert, ("pipeline", storedPipelineId), ("timestamp", timestamp), ("template", Template(pipelineId, timestamp)), ("marker", $"\"seq\":{SeqMarker}"), ("count", count));
        await Execute(connection, transaction, """UPDATE busflow_leases SET "DeliveredUpTo" = @count WHERE "Name" = 'outbox'""", ("count", (long)count));
        await Execute(connection, transaction, """UPDATE busflow_leases SET "LastPosition" = @count WHERE "Name" = 'positions'""", ("count", (long)count));
        await transaction.CommitAsync();
        await Execute(connection, null, analyze);
    }

    private static async Task Execute(DbConnection connection, DbTransaction? transaction, string sql, params (string Name, object Value)[] parameters)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        command.CommandTimeout = 600;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = "@" + name;
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }

        await command.ExecuteNonQueryAsync();
    }

    private static string Template(Guid pipelineId, DateTimeOffset timestamp) => PipelineEventJson.Serialize(new StepProgress
    {
        PipelineId = pipelineId,
        Seq = SeqMarker,
        Timestamp = timestamp,
        Definition = E2eLatency.Pipeline,
        StepName = E2eLatency.Step,
        StepIndex = 0,
        Attempt = 1,
        Percent = 50,
        Message = "replayed from the store",
    });
}

/// <summary>
/// <c>e2e-replay</c>: events per second from the store to one WebSocket subscriber resuming at 0
/// (<c>*</c> after position 0, and the pipeline after seq 0) of a seeded history on PostgreSQL,
/// beside a raw SELECT of the same rows with every column read (Npgsql), the limit. The edge runs
/// in this process on a real Kestrel, the subscriber too. See docs/performance.md.
/// </summary>
public static class E2eReplay
{
    private const string Raw = "raw SELECT";
    private const string All = "edge, `*` after 0";
    private const string One = "edge, pipeline after 0";
    private const string AllBatched = "edge, `*` after 0, batch";
    private const string OneBatched = "edge, pipeline after 0, batch";
    private const string Floor = "bare Kestrel WebSocket (no store)";
    private const int Together = 4;
    private const string AllTogether = "edge, `*` after 0, batch, 4 subscribers at once (events of all 4)";
    private const string Postgres = "PostgreSQL";
    private const string Sqlite = "SQLite";

    public static async Task Run(E2eSettings settings)
    {
        var load = LoadNow();
        var count = settings.ReplayEvents;
        Console.WriteLine(Fmt($"e2e-replay: {count:N0} events of one pipeline on PostgreSQL and on SQLite, {settings.Repetitions} repetitions after a warm-up; load average {load}"));
        var results = new Dictionary<(string Store, string Kind), List<ReplayRun>>();
        var stores = new[] { (Postgres, "postgres"), (Sqlite, "sqlite") }.Where(s => settings.ReplayStores.Contains(s.Item2)).Select(s => s.Item1);
        var readers = new Dictionary<string, string> { ["all"] = All, ["one"] = One, ["all-batch"] = AllBatched, ["one-batch"] = OneBatched, ["all-batch-4"] = AllTogether, ["floor"] = Floor };
        foreach (var store in stores)
        {
            await using var database = store == Postgres ? await BenchDatabase.Create() : null;
            var file = Path.Combine(Path.GetTempPath(), $"busflow-replay-{Guid.NewGuid():N}.db");
            var options = database is not null
                ? new BusFlowStoreOptions { Provider = StoreProviderKind.Postgres, ConnectionString = database.ConnectionString, ApplyMigrations = true }
                : new BusFlowStoreOptions { Provider = StoreProviderKind.Sqlite, ConnectionString = $"Data Source={file}", ApplyMigrations = true };
            try
            {
                // The history is seeded while no host runs: a running outbox delivery keeps its own
                // place and would publish the seeded rows to the bus (and the edge consume them) in
                // the middle of the measurements. A first host only creates the schema.
                await using (var schema = await StartHost(options))
                {
                    await schema.StopAsync();
                }

                await using var data = database is not null ? NpgsqlDataSource.Create(database.ConnectionString) : null;
                var pipelineId = NewId.NextGuid();
                var seed = Stopwatch.StartNew();
                if (data is not null)
                {
                    await EventHistory.SeedPostgresAsync(data, pipelineId, count);
                }
                else
                {
                    await EventHistory.SeedSqliteAsync(options.ConnectionString, pipelineId, count);
                }

                Console.WriteLine(Fmt($"  {store}: seeded {count:N0} events in {seed.Elapsed.TotalSeconds:0.0} s ({count / seed.Elapsed.TotalSeconds:N0}/s)"));
                await using var app = await StartHost(options);
                var ws = new Uri($"ws://{new Uri(app.Urls.First()).Authority}/ws");
                string[] kinds = [Raw, .. readers.Where(r => settings.ReplayReaders.Contains(r.Key) && (store == Postgres || r.Value != Floor)).Select(r => r.Value)];
                for (var rep = 0; rep <= settings.Repetitions; rep++)
                {
                    foreach (var kind in kinds)
                    {
                        var meter = new ResourceMeter();
                        var rowsBefore = app.Services.GetRequiredService<EdgeMetrics>().RowsReadForReplay;
                        var (events, seconds) = kind switch
                        {
                            Raw when data is not null => await RawSelectAsync(data),
                            Raw => await RawSelectAsync(options.ConnectionString),
                            Floor => await SubscribeAsync(new Uri(ws, "/floor/ws"), Fmt($"{count}"), "\"seq\":"u8.ToArray(), count),
                            All or AllBatched => await SubscribeAsync(ws, $$"""{"type":"subscribe","pipelineId":"*","after":0,"batch":{{(kind == AllBatched ? "true" : "false")}}}""", "\"position\":"u8.ToArray(), count),
                            // Subscribers resuming together share the store's pages (SharedPageReads).
                            AllTogether => AllOf(await Task.WhenAll(Enumerable.Range(0, Together).Select(_ => SubscribeAsync(ws, """{"type":"subscribe","pipelineId":"*","after":0,"batch":true}""", "\"position\":"u8.ToArray(), count)))),
                            _ => await SubscribeAsync(ws, $$"""{"type":"subscribe","pipelineId":"{{pipelineId}}","after":0,"batch":{{(kind == OneBatched ? "true" : "false")}}}""", "\"seq\":"u8.ToArray(), count),
                        };
                        var run = new ReplayRun(events, seconds, meter.Stop(events));
                        var rowsRead = app.Services.GetRequiredService<EdgeMetrics>().RowsReadForReplay - rowsBefore;
                        Console.WriteLine(Fmt($"  {(rep == 0 ? "warm-up" : $"rep {rep}"),-7} {store,-10} {kind,-33} {events:N0} events in {seconds:0.00} s = {run.PerSecond:N0}/s; {rowsRead:N0} rows read from the store; {run.Resources}"));
                        if (rep > 0)
                        {
                            results.TryAdd((store, kind), []);
                            results[(store, kind)].Add(run);
                        }
                    }
                }

                await app.StopAsync();
            }
            finally
            {
                SqliteConnection.ClearAllPools();
                foreach (var path in new[] { file, file + "-wal", file + "-shm" }.Where(File.Exists))
                {
                    File.Delete(path);
                }
            }
        }

        Write("e2e-replay", Table(settings, results, load), settings);
    }

    private static async Task<WebApplication> StartHost(BusFlowStoreOptions store)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.None);
        // The edge's own defaults; its store as given, in-memory bus (nothing new is published).
        builder.Services.AddBusFlow(builder.Configuration, b => b
            .UseStore(store)
            .AddWorker(E2eLatency.Step, _ => Task.FromResult(StepResult.Success()))
            .AddPipeline(E2eLatency.Pipeline, p => p.Step(E2eLatency.Step))
            .UseEdge(builder.Configuration));
        builder.Services.PostConfigure<MassTransitHostOptions>(o => o.StopTimeout = TimeSpan.FromSeconds(5));
        var app = builder.Build();
        app.MapBusFlowEdge();
        app.Map("/floor/ws", SendFramesAsync);
        await app.StartAsync();
        return app;
    }

    /// <summary>
    /// Not a relay: once asked for N, sends N frames of a stored payload (seq and position 1..N spliced
    /// in) one SendAsync each, as fast as the socket takes them. What one WebSocket on Kestrel carries.
    /// </summary>
    private static async Task SendFramesAsync(HttpContext context)
    {
        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        var request = new byte[64];
        var received = await socket.ReceiveAsync(request.AsMemory(), context.RequestAborted);
        if (!Utf8Parser.TryParse(request.AsSpan(0, received.Count), out long count, out _))
        {
            return;
        }

        var template = PipelineEventJson.SerializeToUtf8Bytes(Sample(0));
        var frame = new byte[template.Length + 40];
        var seqAt = template.AsSpan().IndexOf("\"seq\":0"u8) + 6;
        var positionAt = template.AsSpan().IndexOf("\"position\":0"u8) + 11;
        for (long i = 1; i <= count; i++)
        {
            // Copy the template with both numbers replaced (seq comes before position).
            var length = 0;
            Append(template.AsSpan(0, seqAt), frame, ref length);
            Utf8Formatter.TryFormat(i, frame.AsSpan(length), out var n);
            length += n;
            Append(template.AsSpan(seqAt + 1, positionAt - seqAt - 1), frame, ref length);
            Utf8Formatter.TryFormat(i, frame.AsSpan(length), out n);
            length += n;
            Append(template.AsSpan(positionAt + 1), frame, ref length);
            await socket.SendAsync(frame.AsMemory(0, length), WebSocketMessageType.Text, true, context.RequestAborted);
        }

        await socket.ReceiveAsync(request.AsMemory(), context.RequestAborted);
    }

    private static void Append(ReadOnlySpan<byte> part, byte[] frame, ref int length)
    {
        part.CopyTo(frame.AsSpan(length));
        length += part.Length;
    }

    /// <summary>The limit: one SELECT of the same rows in position order, every column read.</summary>
    private static async Task<(long, double)> RawSelectAsync(NpgsqlDataSource data)
    {
        var start = Stopwatch.GetTimestamp();
        await using var command = data.CreateCommand("""SELECT "Id", "Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload" FROM busflow_events WHERE "Position" > 0 ORDER BY "Position" """);
        command.CommandTimeout = 600;
        await using var reader = await command.ExecuteReaderAsync();
        long rows = 0;
        long check = 0;
        while (await reader.ReadAsync())
        {
            check += reader.GetInt64(0) + reader.GetInt64(1) + reader.GetGuid(2).GetHashCode() + reader.GetInt64(3) + reader.GetString(4).Length
                + reader.GetFieldValue<DateTimeOffset>(5).Millisecond + reader.GetString(6).Length;
            rows++;
        }

        GC.KeepAlive(check);
        return (rows, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    /// <summary>The limit on SQLite: the same SELECT through Microsoft.Data.Sqlite.</summary>
    private static async Task<(long, double)> RawSelectAsync(string connectionString)
    {
        var start = Stopwatch.GetTimestamp();
        await using var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new SqliteCommand("""SELECT "Id", "Position", "PipelineId", "Seq", "Type", "Timestamp", "Payload" FROM busflow_events WHERE "Position" > 0 ORDER BY "Position" """, connection);
        await using var reader = await command.ExecuteReaderAsync();
        long rows = 0;
        long check = 0;
        while (await reader.ReadAsync())
        {
            check += reader.GetInt64(0) + reader.GetInt64(1) + reader.GetGuid(2).GetHashCode() + reader.GetInt64(3) + reader.GetString(4).Length
                + reader.GetFieldValue<DateTimeOffset>(5).Millisecond + reader.GetString(6).Length;
            rows++;
        }

        GC.KeepAlive(check);
        return (rows, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    /// <summary>
    /// Subscribes with <paramref name="subscribe"/> and reads until <paramref name="expected"/> events
    /// arrived, checking that the number after <paramref name="orderKey"/> goes 1, 2, 3, ... (every
    /// event once, in order). Seconds from sending the subscribe message to the last event.
    /// </summary>
    private static async Task<(long, double)> SubscribeAsync(Uri ws, string subscribe, byte[] orderKey, long expected)
    {
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(ws, CancellationToken.None);
        // Room for the largest batch frame (about 64 KiB of events, and the one that passed it).
        var buffer = new byte[1024 * 1024];
        var start = Stopwatch.GetTimestamp();
        await socket.SendAsync(Encoding.UTF8.GetBytes(subscribe), WebSocketMessageType.Text, true, CancellationToken.None);
        long events = 0;
        var length = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        while (events < expected)
        {
            var result = await socket.ReceiveAsync(buffer.AsMemory(length), timeout.Token);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new InvalidOperationException($"closed after {events} events: {socket.CloseStatus} {socket.CloseStatusDescription}");
            }

            length += result.Count;
            if (!result.EndOfMessage)
            {
                continue;
            }

            // One event per frame, or several in an "events" frame; none in subscribed and heartbeats.
            var frame = buffer.AsSpan(0, length);
            length = 0;
            for (var at = frame.IndexOf(orderKey); at >= 0; at = frame.IndexOf(orderKey))
            {
                frame = frame[(at + orderKey.Length)..];
                if (!Utf8Parser.TryParse(frame, out long order, out _) || order != events + 1)
                {
                    throw new InvalidOperationException($"event {events + 1} expected, got: {Encoding.UTF8.GetString(frame[..Math.Min(frame.Length, 400)])}");
                }

                events++;
            }
        }

        var seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
        return (events, seconds);
    }

    /// <summary>Subscribers at once: every subscriber's events, over the slowest one's seconds.</summary>
    private static (long, double) AllOf((long Events, double Seconds)[] runs) => (runs.Sum(r => r.Events), runs.Max(r => r.Seconds));

    private static string Table(E2eSettings settings, Dictionary<(string Store, string Kind), List<ReplayRun>> results, string load)
    {
        var text = new StringBuilder();
        text.AppendLine(Machine(load));
        text.AppendLine(Fmt($"History of {settings.ReplayEvents:N0} StepProgress events of one pipeline, in PostgreSQL and in SQLite (payload {PayloadBytes()} bytes of JSON each). Medians of {settings.Repetitions} repetitions after a warm-up; each repetition runs every reader in turn, and \"÷ raw SELECT\" is the median of each repetition's reader ÷ that repetition's raw SELECT; events per second from the request (query sent / subscribe sent) to the last row read / event received; \"batch\" subscribes with `\"batch\": true` (several events per `events` frame). CPU in cores: this process (edge + subscriber, or the raw reader), PostgreSQL, others; CPU and allocation per event are this process's."));
        text.AppendLine();
        text.AppendLine("| store | reader | events/s | seconds | ÷ raw SELECT | target ≥ 0.8 | cpu this process | cpu PostgreSQL | cpu other | µs cpu/event | bytes allocated/event |");
        text.AppendLine("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|");
        foreach (var ((store, kind), runs) in results)
        {
            // Each repetition's reader against the raw SELECT of the same repetition, moments apart:
            // the machine's speed drifts between repetitions (the raw reader alone by up to 1.6x), and a
            // ratio of two medians taken from different moments carries that drift.
            var paired = Mid(runs.Zip(results[(store, Raw)], (run, raw) => run.PerSecond / raw.PerSecond));
            var rate = Mid(runs.Select(r => r.PerSecond));
            text.AppendLine(Fmt(
                $"| {store} | {kind} | {F(rate, "N0")} | {F(Mid(runs.Select(r => r.Seconds)), "0.00")} | {F(paired, "0.00")} | {(kind == Raw ? "" : paired >= 0.8 ? "met" : "**missed**")} | {F(Mid(runs.Select(r => r.Resources.BusFlowCores)), "0.00")} | {F(Mid(runs.Select(r => r.Resources.PostgresCores)), "0.00")} | {F(Mid(runs.Select(r => r.Resources.OtherCores)), "0.00")} | {F(Mid(runs.Select(r => r.Resources.BusFlowMsPerEvent * 1000)), "0.00")} | {F(Mid(runs.Select(r => r.Resources.AllocatedKiBPerEvent * 1024)), "0")} |"));
        }

        return text.ToString();
    }

    private static int PayloadBytes() => PipelineEventJson.SerializeToUtf8Bytes(Sample(500_000)).Length;

    private static StepProgress Sample(long order) => new()
    {
        PipelineId = Guid.Empty,
        Seq = order,
        Position = order,
        Timestamp = DateTimeOffset.UtcNow,
        Definition = E2eLatency.Pipeline,
        StepName = E2eLatency.Step,
        StepIndex = 0,
        Attempt = 1,
        Percent = 50,
        Message = "replayed from the store",
    };
}
