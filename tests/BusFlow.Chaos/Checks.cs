using System.Text;
using Npgsql;

namespace BusFlow.Chaos;

/// <summary>One check of the end of a run: what was checked, over how many, and what broke it (nothing when it held).</summary>
public sealed record Check(string Name, long Over, IReadOnlyList<string> Broken)
{
    public bool Held => Broken.Count == 0;
}

/// <summary>Over every subscriber: stored events of its subscription it never received, and receipts of an event it already had.</summary>
public sealed record Tally(long Lost, long Doubled);

/// <summary>An event row as the store keeps it.</summary>
public sealed record StoredRow(Guid PipelineId, long Seq, long? Position, string Type, DateTimeOffset Timestamp);

/// <summary>
/// What the store holds at the end of a run, and the checks of docs/reliability.md against it and
/// against what the driver started and its subscribers received.
/// </summary>
public static class Checks
{
    private const int Shown = 5;

    public static async Task<(List<Check> Checks, List<StoredRow> Rows, Tally Tally)> RunAsync(ChaosServers servers, LoadDriver load, IReadOnlyList<string> failedFaults, IReadOnlyList<string> deadLettered, IReadOnlyList<(Subscriber Subscriber, Func<StoredRow, bool> Wanted)> all)
    {
        await using var connection = new NpgsqlConnection(servers.ConnectionString);
        await connection.OpenAsync();
        var rows = new List<StoredRow>();
        await using (var command = new NpgsqlCommand("""SELECT "PipelineId", "Seq", "Position", "Type", "Timestamp" FROM busflow_events ORDER BY "Position" """, connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                rows.Add(new StoredRow(reader.GetGuid(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetString(3), reader.GetFieldValue<DateTimeOffset>(4)));
            }
        }

        var statuses = new Dictionary<Guid, string>();
        await using (var command = new NpgsqlCommand("""SELECT "PipelineId", "Status" FROM busflow_pipelines""", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                statuses[reader.GetGuid(0)] = reader.GetString(1);
            }
        }

        var ledger = new List<(Guid Pipeline, string Step, int Attempt)>();
        await using (var command = new NpgsqlCommand("SELECT pipeline_id, step, attempt FROM busflow_sample_ledger", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                ledger.Add((Guid.Parse(reader.GetString(0)), reader.GetString(1), reader.GetInt32(2)));
            }
        }

        await using var undelivered = new NpgsqlCommand(
            """
            SELECT (SELECT count(*) FROM busflow_events WHERE "Position" IS NULL OR "Position" > (SELECT "DeliveredUpTo" FROM busflow_leases WHERE "Name" = 'outbox'))
                 + (SELECT count(*) FROM busflow_outbox WHERE "DeliveredAt" IS NULL)
            """,
            connection);
        var left = (long)(await undelivered.ExecuteScalarAsync())!;

        var byPipeline = rows.GroupBy(r => r.PipelineId).ToDictionary(g => g.Key, g => g.OrderBy(r => r.Seq).ToList());
        var started = load.Started.Values.OrderBy(s => s.Index).ToList();
        long lost = 0, doubled = 0;
        var checks = new List<Check>
        {
            Over("every fault injected and repaired", failedFaults.Count, failedFaults),
            Over("every start answered with one pipeline per idempotency key", load.RepeatedStarts + load.Sent, load.DoubledStarts.Concat(load.Sent == started.Count ? [] : [$"{load.Sent - started.Count} of {load.Sent} starts never answered"])),
            Over("the store holds exactly the pipelines started, no other", statuses.Count, statuses.Keys.Except(started.Select(s => s.Id)).Select(id => $"{id} stored, never answered to a start").Concat(started.Where(s => !statuses.ContainsKey(s.Id)).Select(s => $"{s.Watcher.Name} {s.Id} answered, not stored"))),
            Over("every pipeline reached exactly one terminal event, and it completed", started.Count, started.Select(s =>
            {
                var terminal = byPipeline.GetValueOrDefault(s.Id, []).Where(r => Subscriber.IsTerminal(r.Type)).ToList();
                return terminal.Count == 1 && terminal[0].Type == "PipelineCompleted" && statuses.GetValueOrDefault(s.Id) == "Completed"
                    ? null
                    : $"{s.Watcher.Name} {s.Id}: {terminal.Count} terminal events ({string.Join(", ", terminal.Select(t => t.Type))}), status {statuses.GetValueOrDefault(s.Id) ?? "none"}";
            })),
            Over("every pipeline's seqs gapless, each once", byPipeline.Count, byPipeline.Select(p =>
                p.Value.Select(r => r.Seq).SequenceEqual(Enumerable.Range(1, p.Value.Count).Select(i => (long)i)) ? null : $"{p.Key}: seqs {string.Join(",", p.Value.Select(r => r.Seq))}")),
            Over("store-wide positions given, unique, increasing with seq", rows.Count, PositionProblems(rows, byPipeline)),
            // A step's effect commits with its report; a pipeline cut off by the drain may hold an
            // effect whose report the saga has not applied yet (its end is checked above), never two.
            Over("every enlisted ledger effect at most once per step, and once per step of a completed pipeline", started.Count(s => s.Definition == "ledger"), started.Where(s => s.Definition == "ledger").Select(s =>
            {
                var completed = byPipeline.GetValueOrDefault(s.Id, []).Count(r => r.Type == "StepCompleted");
                var ended = byPipeline.GetValueOrDefault(s.Id, []).Any(r => r.Type == "PipelineCompleted");
                var entries = ledger.Where(l => l.Pipeline == s.Id).ToList();
                // The steps run in turn (debit, then credit): the first `completed` of them have their rows.
                var once = entries.Select(e => e.Step).Distinct(StringComparer.Ordinal).Count() == entries.Count
                    && new[] { "debit", "credit" }.Take(completed).All(step => entries.Any(e => e.Step == step));
                return once && (!ended || (completed == 2 && entries.Count == 2))
                    ? null
                    : $"{s.Id}: {completed} steps completed, ledger rows {string.Join(", ", entries.Select(e => $"{e.Step}#{e.Attempt}"))}";
            })),
            Over("every pipeline subscriber got each event once, in order", started.Count, started.Select(s =>
            {
                var got = s.Watcher.Events.Select(e => e.Seq).ToList();
                var want = byPipeline.GetValueOrDefault(s.Id, []).Select(r => r.Seq).ToList();
                Count(got, want);
                return s.Watcher.Failure is null && got.SequenceEqual(want) ? null : $"{s.Watcher.Name} over {s.Watcher.Transport}: got [{Ranges(got)}], stored [{Ranges(want)}]{(s.Watcher.Failure is { } f ? ", " + f : "")}";
            })),
            Over("nothing left undelivered in the outbox", left, left == 0 ? [] : [$"{left} event or outbox rows not delivered"]),
            Over("no bus message moved to an error queue", deadLettered.Count, deadLettered),
        };
        foreach (var (subscriber, wanted) in all)
        {
            var got = subscriber.Events.Select(e => e.Position).ToList();
            var want = rows.Where(wanted).Select(r => r.Position ?? 0).ToList();
            Count(got, want);
            checks.Add(Over($"`*` subscriber {subscriber.Name} got each of its events once, in position order", want.Count, subscriber.Failure is null && got.SequenceEqual(want) ? [] : [$"got {got.Count} [{Ranges(got)}], stored {want.Count} [{Ranges(want)}]{(subscriber.Failure is { } f ? ", " + f : "")}"]));
        }

        return (checks, rows, new Tally(lost, doubled));

        void Count(List<long> got, List<long> want)
        {
            lost += want.Except(got).Count();
            doubled += got.Count - got.Distinct().Count();
        }
    }

    private static IEnumerable<string?> PositionProblems(List<StoredRow> rows, Dictionary<Guid, List<StoredRow>> byPipeline)
    {
        var missing = rows.Count(r => r.Position is null);
        if (missing > 0)
        {
            yield return $"{missing} rows without a position";
        }

        var positions = rows.Where(r => r.Position is not null).Select(r => r.Position!.Value).ToList();
        if (positions.Distinct().Count() != positions.Count)
        {
            yield return "a position given twice";
        }

        foreach (var (id, events) in byPipeline)
        {
            var ordered = events.Where(e => e.Position is not null).Select(e => e.Position!.Value).ToList();
            if (!ordered.SequenceEqual(ordered.Order()))
            {
                yield return $"{id}: positions do not increase with seq";
            }
        }
    }

    private static Check Over(string name, long over, IEnumerable<string?> problems)
    {
        var broken = problems.Where(p => p is not null).Select(p => p!).ToList();
        return new Check(name, over, broken);
    }

    /// <summary>A list of numbers as runs: 1-5,7,9-12 (repeats and order kept visible: 1-3,3,2).</summary>
    public static string Ranges(IReadOnlyList<long> values)
    {
        var text = new StringBuilder();
        for (var i = 0; i < values.Count; i++)
        {
            var start = values[i];
            while (i + 1 < values.Count && values[i + 1] == values[i] + 1)
            {
                i++;
            }

            text.Append(text.Length == 0 ? "" : ",").Append(start == values[i] ? $"{start}" : $"{start}-{values[i]}");
            if (text.Length > 200)
            {
                return text.Append(",...").ToString();
            }
        }

        return text.ToString();
    }

    public static IEnumerable<string> Examples(Check check) => check.Broken.Take(Shown);
}
