using System.Collections.Concurrent;

namespace BusFlow.Internal;

/// <summary>The step attempts running in this process, so a cancel request can reach them.</summary>
internal sealed class RunningSteps
{
    private readonly ConcurrentDictionary<Guid, CancellationTokenSource> _running = new();

    public int Count => _running.Count;

    public IDisposable Register(Guid executionId, CancellationTokenSource cancellation)
    {
        _running[executionId] = cancellation;
        return new Registration(this, executionId);
    }

    public void Cancel(Guid executionId)
    {
        if (_running.TryGetValue(executionId, out var cancellation))
        {
            try
            {
                cancellation.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The attempt ended between the lookup and the cancel.
            }
        }
    }

    private sealed class Registration(RunningSteps owner, Guid executionId) : IDisposable
    {
        public void Dispose() => owner._running.TryRemove(executionId, out _);
    }
}
