using System.Globalization;

namespace BusFlow.Chaos;

/// <summary>The run's shape: how long, how fast, how often a fault.</summary>
public sealed record ChaosSettings(string Profile, TimeSpan Load, double Rate, TimeSpan FaultEvery, bool RandomFaults, TimeSpan Drain, int Seed, bool Docs, IReadOnlyList<string>? Kinds = null)
{
    public static ChaosSettings Parse(string[] args)
    {
        string Option(string name, string fallback)
        {
            var at = Array.IndexOf(args, name);
            return at >= 0 && at + 1 < args.Length ? args[at + 1] : fallback;
        }

        var profile = Option("--profile", "short");
        var (seconds, rate, every, overlap) = profile == "long" ? (600, 6.0, 2.0, true) : (100, 3.0, 10.0, false);
        return new ChaosSettings(
            profile,
            TimeSpan.FromSeconds(double.Parse(Option("--seconds", seconds.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture)),
            double.Parse(Option("--rate", rate.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture),
            TimeSpan.FromSeconds(double.Parse(Option("--fault-every", every.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture)),
            overlap,
            TimeSpan.FromSeconds(double.Parse(Option("--drain", "180"), CultureInfo.InvariantCulture)),
            int.Parse(Option("--seed", "14"), CultureInfo.InvariantCulture),
            args.Contains("--docs"),
            // Only these kinds of fault (comma-separated), to look into one.
            Option("--kinds", "") is { Length: > 0 } kinds ? Known(kinds.Split(',')) : null);
    }

    private static string[] Known(string[] kinds)
    {
        var unknown = kinds.Except(FaultInjector.Kinds).ToList();
        return unknown.Count == 0
            ? kinds
            : throw new ArgumentException($"--kinds: unknown {string.Join(", ", unknown)}; the kinds here are {string.Join(", ", FaultInjector.Kinds)}");
    }
}
