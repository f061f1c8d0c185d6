using System.Diagnostics;
using System.Globalization;

namespace BusFlow.Benchmarks;

/// <summary>
/// Where the CPU went during a measurement, from /proc: this process (BusFlow, its bus and the
/// benchmark driver), PostgreSQL, RabbitMQ (beam.smp) and everything else on the machine, in cores
/// (1.0 = one core busy for the whole measurement); plus this process's allocations and GC pauses.
/// </summary>
public sealed class ResourceMeter
{
    private const double TicksPerSecond = 100; // USER_HZ on Linux
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly Dictionary<int, (string Group, double Ticks)> _cpu = Sample();
    private readonly (long Busy, long Total) _machine = Machine();
    private readonly long _allocated = GC.GetTotalAllocatedBytes();
    private readonly TimeSpan _pause = GC.GetTotalPauseDuration();
    private readonly int _gen0 = GC.CollectionCount(0);
    private readonly int _gen2 = GC.CollectionCount(2);
    private readonly long _jitted = System.Runtime.JitInfo.GetCompiledMethodCount();
    private readonly TimeSpan _jitTime = System.Runtime.JitInfo.GetCompilationTime();

    /// <summary>What the interval since this meter was created used, per event.</summary>
    public ResourceUse Stop(long events)
    {
        var seconds = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        var now = Sample();
        var machine = Machine();
        // Per process: ticks since the start (all of them for a process that started since); processes
        // that ended in between are missed, so "other" is what the machine was busy with beyond the rest.
        var used = now.GroupBy(p => p.Value.Group).ToDictionary(g => g.Key, g => g.Sum(p => p.Value.Ticks - (_cpu.TryGetValue(p.Key, out var before) && before.Group == p.Value.Group ? before.Ticks : 0)) / TicksPerSecond / seconds);
        var busy = machine.Total > _machine.Total ? (double)(machine.Busy - _machine.Busy) / (machine.Total - _machine.Total) : 0;
        var known = used.Where(u => u.Key != "other").Sum(u => u.Value);
        return new ResourceUse(
            used.GetValueOrDefault("self"),
            used.GetValueOrDefault("postgres"),
            used.GetValueOrDefault("rabbitmq"),
            Math.Max(0, (busy * Environment.ProcessorCount) - known),
            busy,
            used.GetValueOrDefault("self") * seconds * 1000 / events,
            (GC.GetTotalAllocatedBytes() - _allocated) / (double)events / 1024,
            GC.CollectionCount(0) - _gen0,
            GC.CollectionCount(2) - _gen2,
            (GC.GetTotalPauseDuration() - _pause).TotalMilliseconds,
            System.Runtime.JitInfo.GetCompiledMethodCount() - _jitted,
            (System.Runtime.JitInfo.GetCompilationTime() - _jitTime).TotalMilliseconds);
    }

    /// <summary>CPU ticks (user + system) used so far by each process, with its group.</summary>
    private static Dictionary<int, (string Group, double Ticks)> Sample()
    {
        var result = new Dictionary<int, (string Group, double Ticks)>();
        if (!Directory.Exists("/proc"))
        {
            return result;
        }

        var self = Environment.ProcessId;
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }

            var open = stat.IndexOf('(', StringComparison.Ordinal);
            var close = stat.LastIndexOf(')');
            if (open < 0 || close < open)
            {
                continue;
            }

            var comm = stat[(open + 1)..close];
            var fields = stat[(close + 2)..].Split(' ');
            // Fields after the name: state(3) ... utime(14) stime(15), so utime is index 11 here.
            var ticks = double.Parse(fields[11], CultureInfo.InvariantCulture) + double.Parse(fields[12], CultureInfo.InvariantCulture);
            var group = pid == self ? "self" : comm switch
            {
                "postgres" => "postgres",
                "beam.smp" or "erl_child_setup" or "epmd" or "inet_gethost" => "rabbitmq",
                _ => "other",
            };
            result[pid] = (group, ticks);
        }

        return result;
    }

    private static (long Busy, long Total) Machine()
    {
        if (!File.Exists("/proc/stat"))
        {
            return (0, 0);
        }

        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
        var idle = cpu[3] + cpu[4];
        var total = cpu.Take(8).Sum();
        return (total - idle, total);
    }
}

/// <summary>CPU in cores (1.0 = one core busy for the whole measurement) by process group, and this process's cost per event.</summary>
public sealed record ResourceUse(
    double BusFlowCores,
    double PostgresCores,
    double RabbitMqCores,
    double OtherCores,
    double MachineBusy,
    double BusFlowMsPerEvent,
    double AllocatedKiBPerEvent,
    int Gen0,
    int Gen2,
    double GcPauseMs,
    long MethodsJitted,
    double JitMs)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"cpu (cores): busflow+driver {BusFlowCores:0.00}, postgres {PostgresCores:0.00}, rabbitmq {RabbitMqCores:0.00}, other {OtherCores:0.00}; machine busy {MachineBusy:P0}; " +
        $"busflow+driver cpu {BusFlowMsPerEvent:0.00} ms/event, alloc {AllocatedKiBPerEvent:0.0} KiB/event, GC gen0 {Gen0} gen2 {Gen2} pause {GcPauseMs:0} ms; JIT {MethodsJitted} methods {JitMs:0} ms");
}
