using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using BusFlow.Store;

namespace BusFlow.Benchmarks;

/// <summary>Settings of the end-to-end scenarios (<c>e2e-latency</c>, <c>e2e-replay</c>, <c>e2e-fanout</c>).</summary>
public sealed record E2eSettings
{
    public int Repetitions { get; init; } = 3;

    /// <summary>Latency: offered loads, pipelines per second.</summary>
    public IReadOnlyList<double> Rates { get; init; } = [10, 100, 1000];

    /// <summary>Latency: seconds of offered load per rate (10/s gets at least 60 pipelines).</summary>
    public double LatencySeconds { get; init; } = 3;

    /// <summary>Latency: stacks to run, <c>memory</c> (in-memory bus + SQLite) and <c>rabbit</c> (RabbitMQ + PostgreSQL).</summary>
    public IReadOnlyList<string> Stacks { get; init; } = [E2eLatency.Memory, E2eLatency.Rabbit];

    /// <summary>Replay: events in the seeded history.</summary>
    public int ReplayEvents { get; init; } = 1_000_000;

    /// <summary>Latency: how BusFlow publishes events; null for its default.</summary>
    public EventPublishMode? EventPublishing { get; init; }

    /// <summary>Latency: whether the edge takes events from the store committing in its process (<c>EdgeOptions.TakeCommittedEventsInProcess</c>); null for its default.</summary>
    public bool? InProcessEvents { get; init; }

    /// <summary>Replay: stores to replay from, <c>postgres</c> and <c>sqlite</c>.</summary>
    public IReadOnlyList<string> ReplayStores { get; init; } = ["postgres", "sqlite"];

    /// <summary>Replay: readers to measure, <c>raw</c>, <c>all</c>, <c>one</c>, <c>all-batch</c>, <c>one-batch</c>, <c>floor</c> (PostgreSQL only); raw is always measured.</summary>
    public IReadOnlyList<string> ReplayReaders { get; init; } = ["raw", "all", "one", "all-batch", "one-batch", "all-batch-4", "floor"];

    /// <summary>Fan-out: subscriber counts.</summary>
    public IReadOnlyList<int> FanoutClients { get; init; } = [1, 100, 1000, 10_000];

    /// <summary>Fan-out: events per measurement (fewer, slower, for 10,000 subscribers; see E2eFanout).</summary>
    public int FanoutEvents { get; init; } = 30;

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Write the tables into docs/performance.md (off with <c>--no-docs</c>: printed only).</summary>
    public bool WriteDocs { get; init; } = true;

    public static IReadOnlyList<double> ParseRates(string value) => value.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();

    public static IReadOnlyList<int> ParseInts(string value) => value.Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
}

/// <summary>
/// Writes one scenario's table into docs/performance.md between <c>&lt;!-- NAME:begin --&gt;</c> and
/// <c>&lt;!-- NAME:end --&gt;</c> (replacing what was there; appended at the end when the markers are
/// missing), headed by the machine it ran on, the date and the commit.
/// </summary>
public static class E2eReport
{
    public static string Machine(string loadBefore)
    {
        var text = new StringBuilder();
        text.AppendLine(Fmt($"Run of {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC on commit `{Commit()}`; machine: {Environment.ProcessorCount} cores ({CpuModel()}), {MemoryGiB():0.0} GiB memory, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}; load average before {loadBefore}, after {LoadNow()}."));
        return text.ToString();
    }

    public static void Write(string name, string markdown, E2eSettings settings)
    {
        var path = DocsPath();
        Console.WriteLine();
        Console.WriteLine(markdown);
        if (!settings.WriteDocs)
        {
            Console.WriteLine("(--no-docs: table printed only)");
            return;
        }

        if (path is null)
        {
            Console.WriteLine("(docs/performance.md not found from the current directory; table printed only)");
            return;
        }

        var begin = $"<!-- {name}:begin -->";
        var end = $"<!-- {name}:end -->";
        var doc = File.ReadAllText(path);
        var from = doc.IndexOf(begin, StringComparison.Ordinal);
        var to = doc.IndexOf(end, StringComparison.Ordinal);
        var block = $"{begin}\n{markdown.TrimEnd()}\n{end}";
        doc = from >= 0 && to > from ? doc[..from] + block + doc[(to + end.Length)..] : doc.TrimEnd() + "\n\n" + block + "\n";
        File.WriteAllText(path, doc);
        Console.WriteLine($"written to {path} between {begin} and {end}");
    }

    public static string LoadNow() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    /// <summary>Nearest-rank percentile of sorted values.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    public static double Mid(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static double Ms(long fromTicks, long toTicks) => (toTicks - fromTicks) * 1000.0 / Stopwatch.Frequency;

    public static string F(double value, string format = "0.0") => double.IsNaN(value) ? "-" : value.ToString(format, CultureInfo.InvariantCulture);

    public static string Fmt(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string? DocsPath()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "docs", "performance.md");
            if (File.Exists(Path.Combine(dir.FullName, "BusFlow.sln")) && File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    private static string Commit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse --short HEAD") { RedirectStandardOutput = true, UseShellExecute = false })!;
            var head = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            using var status = Process.Start(new ProcessStartInfo("git", "status --porcelain --untracked-files=no -- src tests") { RedirectStandardOutput = true, UseShellExecute = false })!;
            var dirty = status.StandardOutput.ReadToEnd().Trim().Length > 0;
            status.WaitForExit();
            return head.Length == 0 ? "unknown" : dirty ? head + " + uncommitted changes" : head;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown";
        }
    }

    private static string CpuModel() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
            : "unknown CPU";

    private static double MemoryGiB()
    {
        var line = File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal)) : null;
        return line is null ? double.NaN : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0 / 1024.0;
    }
}
