using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace BusFlow.Benchmarks;

/// <summary>
/// With --profile: counts the commands (round trips) Npgsql sends, by kind of statement, with their
/// total time, from Npgsql's ActivitySource. Listening costs time, so profiled runs are not the figures.
/// </summary>
public sealed partial class SqlProfiler : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentDictionary<string, (long Count, double Ms)> _byKind = new();

    public SqlProfiler()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStopped = Record,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public void Reset() => _byKind.Clear();

    /// <summary>Commands by kind, most frequent first, with counts per <paramref name="events"/>.</summary>
    public string Report(long events)
    {
        var lines = _byKind.OrderByDescending(k => k.Value.Count).Take(15)
            .Select(k => string.Create(CultureInfo.InvariantCulture, $"    {k.Value.Count,8} cmds {k.Value.Count / (double)events,7:0.000}/event {k.Value.Ms,9:0} ms  {k.Key}"));
        var total = _byKind.Values.Sum(v => v.Count);
        return string.Create(CultureInfo.InvariantCulture, $"  SQL commands: {total} for {events} events ({total / (double)events:0.00} per event)\n") + string.Join('\n', lines);
    }

    public void Dispose() => _listener.Dispose();

    private void Record(Activity activity)
    {
        var sql = activity.GetTagItem("db.query.text") as string ?? activity.GetTagItem("db.statement") as string ?? activity.DisplayName;
        var kind = Kind(sql);
        _byKind.AddOrUpdate(kind, _ => (1, activity.Duration.TotalMilliseconds), (_, v) => (v.Count + 1, v.Ms + activity.Duration.TotalMilliseconds));
    }

    private static string Kind(string sql)
    {
        var statements = sql.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var first = Spaces().Replace(statements.FirstOrDefault() ?? sql, " ");
        first = Values().Replace(first, "VALUES (...)");
        first = InList().Replace(first, "IN (...)");
        if (first.Length > 110)
        {
            first = first[..110] + "...";
        }

        return statements.Length > 1 ? $"[{statements.Length} stmts] {first}" : first;
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Spaces();

    [GeneratedRegex(@"VALUES \(.*$")]
    private static partial Regex Values();

    [GeneratedRegex(@"IN \([^)]*\)|= ANY \([^)]*\)")]
    private static partial Regex InList();
}
