using System.Diagnostics;

namespace BusFlow.Chaos;

/// <summary>Each process's resident set every few seconds.</summary>
public sealed class Memory(Topology topology, Stopwatch clock)
{
    public List<(double At, string Process, long Bytes)> Samples { get; } = [];

    public async Task SampleAsync(TimeSpan every, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            foreach (var process in topology.Processes)
            {
                Samples.Add((clock.Elapsed.TotalSeconds, process.Name, process.ResidentBytes()));
            }

            try
            {
                await Task.Delay(every, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}
