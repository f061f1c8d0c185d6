namespace BusFlow.Store.Internal;

/// <summary>Wakes the outbox delivery when this process committed something to deliver.</summary>
internal sealed class OutboxSignal : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0);
    private int _pending;

    /// <summary>Called on every commit: only the first wake-up since the delivery last woke releases it (no exception, no lock).</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _pending, 1) == 0)
        {
            _signal.Release();
        }
    }

    /// <summary>
    /// Waits for a wake-up or the timeout. The pending flag is cleared before the caller's round
    /// reads the database, so a commit that woke nobody is still seen by that round.
    /// </summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var woken = await _signal.WaitAsync(timeout, cancellationToken);
        Interlocked.Exchange(ref _pending, 0);
        return woken;
    }

    public void Dispose() => _signal.Dispose();
}
