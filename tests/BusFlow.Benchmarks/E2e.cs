using BusFlow.Store;
using static BusFlow.Benchmarks.E2eReport;

namespace BusFlow.Benchmarks;

/// <summary>
/// The end-to-end scenarios: <c>e2e</c> runs them all, or name them: <c>e2e-throughput</c>,
/// <c>e2e-scaling</c>, <c>e2e-latency</c>, <c>e2e-replay</c>, <c>e2e-fanout</c>. Each writes its table
/// into docs/performance.md. Options: --reps 3 --rates 10,100,1000 --seconds 3 --stacks memory,rabbit
/// --history 1000000 --fanout 1,100,1000,10000 --fanout-events 30 --no-docs (print only); the options of e2e-throughput and
/// e2e-scaling (E2eThroughput.cs) are passed on to them.
/// </summary>
public static class E2e
{
    public static readonly string[] Scenarios = ["e2e-throughput", "e2e-scaling", "e2e-latency", "e2e-replay", "e2e-fanout"];

    public static bool Handles(string[] args) => args.Length > 0 && (args[0] == "e2e" || Scenarios.Contains(args[0]));

    public static async Task<int> Run(string[] args)
    {
        var settings = new E2eSettings();
        var chosen = new List<string>();
        var passedOn = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => args[++i];
            switch (args[i])
            {
                case "e2e":
                    chosen.AddRange(Scenarios);
                    break;
                case var name when Scenarios.Contains(name):
                    chosen.Add(name);
                    break;
                case "--reps":
                    settings = settings with { Repetitions = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture) };
                    passedOn.AddRange(["--reps", args[i]]);
                    break;
                case "--rates":
                    settings = settings with { Rates = E2eSettings.ParseRates(Next()) };
                    break;
                case "--seconds":
                    settings = settings with { LatencySeconds = double.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture) };
                    break;
                case "--stacks":
                    settings = settings with { Stacks = Next().Split(',') };
                    break;
                case "--history":
                    settings = settings with { ReplayEvents = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture) };
                    break;
                case "--latency-event-publishing":
                    settings = settings with { EventPublishing = Enum.Parse<EventPublishMode>(Next(), ignoreCase: true) };
                    break;
                case "--latency-in-process-events":
                    settings = settings with { InProcessEvents = Next() switch { "on" => true, "off" => false, var v => throw new ArgumentException($"--latency-in-process-events takes on or off, not '{v}'") } };
                    break;
                case "--replay-stores":
                    settings = settings with { ReplayStores = Next().Split(',') };
                    break;
                case "--replay-readers":
                    settings = settings with { ReplayReaders = Next().Split(',') };
                    break;
                case "--fanout":
                    settings = settings with { FanoutClients = E2eSettings.ParseInts(Next()) };
                    break;
                case "--fanout-events":
                    settings = settings with { FanoutEvents = int.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture) };
                    break;
                case "--no-docs":
                    settings = settings with { WriteDocs = false };
                    passedOn.Add("--no-docs");
                    break;
                case var option when option.StartsWith("--", StringComparison.Ordinal):
                    passedOn.Add(option);
                    if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    {
                        passedOn.Add(Next());
                    }

                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'. Scenarios: e2e, {string.Join(", ", Scenarios)}; options: see E2e.cs.");
            }
        }

        var total = System.Diagnostics.Stopwatch.StartNew();
        foreach (var scenario in Scenarios.Where(chosen.Contains))
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            switch (scenario)
            {
                case "e2e-throughput":
                    await E2eThroughput.Run(passedOn, lenient: false);
                    break;
                case "e2e-scaling":
                    await E2eScaling.Run(passedOn, lenient: false);
                    break;
                case "e2e-latency":
                    await E2eLatency.Run(settings);
                    break;
                case "e2e-replay":
                    await E2eReplay.Run(settings);
                    break;
                case "e2e-fanout":
                    await E2eFanout.Run(settings);
                    break;
            }

            Console.WriteLine(Fmt($"{scenario} took {watch.Elapsed.TotalSeconds:0} s"));
        }

        Console.WriteLine(Fmt($"Total time {total.Elapsed.TotalSeconds:0} s; load average at the end: {LoadNow()}"));
        return 0;
    }
}
