using System.Globalization;
using System.Text;

namespace BusFlow.Chaos;

/// <summary>The run's table: what was done, what each check found, how fast throughput came back after each fault, memory.</summary>
public static class Report
{
    public static string Build(ChaosSettings settings, string run, string commit, LoadDriver load, IReadOnlyList<Fault> faults, IReadOnlyList<Check> checks, Tally tally, IReadOnlyList<StoredRow> stored, DateTimeOffset origin, IReadOnlyList<Subscriber> all, Memory memory, Topology topology, TimeSpan took, double loadSeconds)
    {
        var text = new StringBuilder();
        var started = load.Started.Values.ToList();
        var watchers = started.Select(s => s.Watcher).ToList();
        text.AppendLine(BenchMachine.Invariant($"Chaos run `{run}` ({settings.Profile} profile) on commit `{commit}`, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; machine: {BenchMachine.Describe()}. Topology: {string.Join(", ", topology.Processes.GroupBy(p => p.Role).Select(g => $"{g.Count()} {g.Key}"))} processes of {RoleProcess.HostDescription} on {(ChaosServers.ClusterNodes.Count > 0 ? $"a {ChaosServers.ClusterNodes.Count}-node RabbitMQ cluster with quorum queues" : "RabbitMQ")} and PostgreSQL. {loadSeconds:0} s of load at {settings.Rate} pipelines/s, a fault every {settings.FaultEvery.TotalSeconds:0.#} s{(settings.RandomFaults ? " (kinds at random)" : " (kinds in turn)")}; the whole run took {took.TotalSeconds:0} s."));
        text.AppendLine();
        text.AppendLine("| measure | value |");
        text.AppendLine("|---|---|");
        text.AppendLine(BenchMachine.Invariant($"| faults injected | {faults.Count}: {string.Join(", ", FaultInjector.Kinds.Select(k => $"{k} {faults.Count(f => f.Kind == k)}"))} |"));
        text.AppendLine(BenchMachine.Invariant($"| pipelines | {started.Count}: {string.Join(", ", started.GroupBy(s => s.Definition).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"))}; starts sent again with their keys {load.RepeatedStarts}; approvals answered {started.Sum(s => s.Answers)} times |"));
        text.AppendLine(BenchMachine.Invariant($"| events received | {watchers.Sum(w => w.Events.Count)} by pipeline subscribers, {all.Sum(w => w.Events.Count)} by `*` subscribers |"));
        text.AppendLine(BenchMachine.Invariant($"| subscribers | {string.Join(", ", watchers.GroupBy(w => w.Transport).Select(g => $"{g.Count()} over {g.Key}"))} (one per pipeline), {all.Count} on `*` over websocket; reconnects {watchers.Concat(all).Sum(w => w.Reconnects)} |"));
        text.AppendLine(BenchMachine.Invariant($"| lost / doubled at subscribers | {tally.Lost} (stored events of their subscriptions they never received) / {tally.Doubled} (events received more than once) |"));
        text.AppendLine();
        text.AppendLine("| check | over | result |");
        text.AppendLine("|---|---:|---|");
        foreach (var check in checks)
        {
            text.AppendLine(BenchMachine.Invariant($"| {check.Name} | {check.Over} | {(check.Held ? "held" : $"**broken** {check.Broken.Count}: {string.Join("; ", Checks.Examples(check))}")} |"));
        }

        text.AppendLine();
        // When each pipeline completed, by its final event's timestamp (the saga's clock), in seconds into the run.
        var completions = stored.Where(r => r.Type == "PipelineCompleted").Select(r => (r.Timestamp - origin).TotalSeconds).ToList();
        text.AppendLine("Recovery after each fault: pipelines completed per second (by their final events' timestamps) over the 10 s before it, and the seconds from its repair until completions ran at half that rate again (over 5 s).");
        text.AppendLine();
        text.AppendLine("| at, s | fault | target | lasted, s | completed/s before | back to half, s |");
        text.AppendLine("|---:|---|---|---:|---:|---:|");
        var recoveries = new List<double>();
        foreach (var fault in faults.OrderBy(f => f.Start))
        {
            double Rate(double from, double seconds) => completions.Count(c => c >= from && c < from + seconds) / seconds;
            var before = Rate(fault.Start - 10, 10);
            var back = Enumerable.Range(0, 240).Select(i => fault.End + (i * 0.5)).Cast<double?>().FirstOrDefault(t => Rate(t!.Value, 5) >= before / 2);
            if (back is { } b && before > 0)
            {
                recoveries.Add(b - fault.End);
            }

            text.AppendLine(BenchMachine.Invariant($"| {fault.Start:0} | {fault.Kind} | {fault.Target} | {fault.End - fault.Start:0.0} | {before:0.0} | {(before == 0 ? "n/a" : back is { } t ? $"{t - fault.End:0.0}" : "> 120")} |"));
        }

        if (recoveries.Count > 0)
        {
            text.AppendLine();
            text.AppendLine(BenchMachine.Invariant($"Recovery to half rate: median {recoveries.Order().ElementAt(recoveries.Count / 2):0.0} s, longest {recoveries.Max():0.0} s."));
        }

        text.AppendLine();
        text.AppendLine("| process | restarts | starts that exited by themselves (started again) | slowest start until ready, s | resident after warm-up (20 % of the load), MiB | resident at the end, MiB | largest, MiB |");
        text.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        foreach (var process in topology.Processes)
        {
            var samples = memory.Samples.Where(s => s.Process == process.Name && s.Bytes > 0).ToList();
            var warm = samples.FirstOrDefault(s => s.At >= loadSeconds * 0.2);
            text.AppendLine(BenchMachine.Invariant($"| {process.Name} | {process.Restarts} | {process.FailedStarts} | {process.SlowestStart.TotalSeconds:0.0} | {Mib(warm.Bytes)} | {Mib(samples.LastOrDefault().Bytes)} | {Mib(samples.Count == 0 ? 0 : samples.Max(s => s.Bytes))} |"));
        }

        return text.ToString();
    }

    /// <summary>Replaces the run section of docs/reliability.md.</summary>
    public static void WriteDocs(string report) => Console.WriteLine($"wrote the run into {BenchMachine.WriteSection("chaos", report, "reliability.md")}");

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0", CultureInfo.InvariantCulture);

}
