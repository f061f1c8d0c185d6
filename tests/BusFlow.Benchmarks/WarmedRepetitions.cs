namespace BusFlow.Benchmarks;

/// <summary>
/// Uncounted warm-ups, repeated until no measurement in one JIT-compiled more than a number of
/// methods (counted for the whole benchmark process; at most a number of warm-ups), then the counted
/// repetitions: a scenario measures a process past tiered JIT compilation, as a long-running service
/// is, not its first seconds (docs/performance.md, "Where the CPU went").
/// </summary>
public static class WarmedRepetitions
{
    /// <summary>Warm-ups repeat while one compiled more than this many methods.</summary>
    public const int DefaultJitMethods = 300;

    /// <summary>At most this many warm-ups, however much the last one compiled.</summary>
    public const int DefaultMaxWarmUps = 8;

    /// <summary>
    /// Runs <paramref name="repetition"/> for each warm-up (number 0, labelled "warm-up N") and then for
    /// each of <paramref name="counted"/> repetitions (1..counted, "rep N"); it returns the most methods
    /// one of its measurements compiled. Returns how many warm-ups ran.
    /// </summary>
    public static async Task<int> RunAsync(int counted, int maxWarmUps, long jitMethods, Func<int, string, Task<long>> repetition)
    {
        var warmUps = 0;
        for (var rep = 0; rep <= counted; rep++)
        {
            var label = rep == 0 ? BenchMachine.Invariant($"warm-up {warmUps + 1}") : BenchMachine.Invariant($"rep {rep}");
            var jitted = await repetition(rep, label);
            if (rep == 0 && ++warmUps < maxWarmUps && jitted > jitMethods)
            {
                rep--;
            }
        }

        return warmUps;
    }
}
