namespace BusFlow.Internal;

/// <summary>
/// How many attempts of each local worker may run at once (its <see cref="WorkerRegistration.Concurrency"/>),
/// shared by the worker's queue consumer and the steps co-located with the saga, so co-location never
/// runs a worker beyond the limit it was registered with.
/// </summary>
internal sealed class WorkerSlots(PipelineRegistry registry)
{
    private readonly Dictionary<string, SemaphoreSlim> _slots = registry.Workers.Values.ToDictionary(w => w.Name, w => new SemaphoreSlim(w.Concurrency), StringComparer.Ordinal);

    /// <summary>Waits for a slot of <paramref name="worker"/>; dispose the result to give it back.</summary>
    public async Task<IDisposable> EnterAsync(string worker, CancellationToken cancellationToken)
    {
        var slots = _slots[worker];
        await slots.WaitAsync(cancellationToken);
        return new Slot(slots);
    }

    /// <summary>Takes a slot of <paramref name="worker"/> if one is free now.</summary>
    public bool TryEnter(string worker, out IDisposable slot)
    {
        if (_slots.TryGetValue(worker, out var slots) && slots.Wait(0))
        {
            slot = new Slot(slots);
            return true;
        }

        slot = Slot.None;
        return false;
    }

    private sealed class Slot(SemaphoreSlim? slots) : IDisposable
    {
        public static readonly Slot None = new(null);

        private SemaphoreSlim? _slots = slots;

        public void Dispose() => Interlocked.Exchange(ref _slots, null)?.Release();
    }
}
