namespace BusFlow.Store.Internal;

/// <summary>
/// Wakes the outbox delivery, and hands it the event rows this process's group commits just
/// committed with their positions, so that publishing them needs no read of the store. The
/// delivery takes them only as a run that continues exactly where it stands; anything else (rows
/// committed by another process, a hand-over that was dropped or lost) it reads from the store.
/// </summary>
internal sealed class OutboxSignal : IDisposable
{
    /// <summary>The most rows held for the delivery; beyond, they are dropped and read from the store.</summary>
    internal const int MaxHeld = 20_000;

    private readonly SemaphoreSlim _signal = new(0);
    private readonly Lock _gate = new();
    private readonly PriorityQueue<PipelineEventRecord[], long> _committed = new();
    private int _pending;
    private int _lookInStore;
    private int _held;
    private bool _dropped;

    /// <summary>Something to deliver was committed that the delivery must look for in the store.</summary>
    public void Wake()
    {
        Interlocked.Exchange(ref _lookInStore, 1);
        Release();
    }

    /// <summary>
    /// Hands over the rows of one committed group, in position order with contiguous positions,
    /// and wakes the delivery.
    /// </summary>
    public void Committed(IReadOnlyList<PipelineEventRecord> rows)
    {
        if (rows.Count == 0)
        {
            return;
        }

        lock (_gate)
        {
            if (_held + rows.Count > MaxHeld)
            {
                DropHeld();
            }
            else
            {
                _committed.Enqueue([.. rows], rows[0].Position!.Value);
                _held += rows.Count;
            }
        }

        Release();
    }

    /// <summary>
    /// Takes the held rows that continue without a hole from position <paramref name="after"/>
    /// (whole groups, at least one, then until <paramref name="max"/> would be passed). Rows at or
    /// below <paramref name="after"/> are dropped: they were read from the store. <paramref
    /// name="lookInStore"/> is true when rows may be committed that are not held here: the next held
    /// group does not continue at <paramref name="after"/>, or held rows were dropped.
    /// </summary>
    public List<PipelineEventRecord> TakeCommitted(long after, int max, out bool lookInStore)
    {
        var rows = new List<PipelineEventRecord>();
        lock (_gate)
        {
            lookInStore = _dropped;
            _dropped = false;
            while (_committed.TryPeek(out var group, out var first))
            {
                var last = group[^1].Position!.Value;
                if (last > after && first > after + 1)
                {
                    lookInStore = true;
                    break;
                }

                if (rows.Count > 0 && rows.Count + group.Length > max)
                {
                    break;
                }

                _committed.Dequeue();
                _held -= group.Length;
                foreach (var row in group)
                {
                    if (row.Position > after)
                    {
                        rows.Add(row);
                    }
                }

                after = Math.Max(after, last);
            }
        }

        return rows;
    }

    /// <summary>True while rows are held for the delivery.</summary>
    public bool HoldsCommitted
    {
        get
        {
            lock (_gate)
            {
                return _held > 0;
            }
        }
    }

    /// <summary>Drops the held rows (this process does not deliver now); whoever delivers reads them from the store.</summary>
    public void DropCommitted()
    {
        lock (_gate)
        {
            DropHeld();
        }
    }

    private void DropHeld()
    {
        _dropped |= _held > 0;
        _committed.Clear();
        _held = 0;
    }

    private void Release()
    {
        // Only the first wake-up since the delivery last woke releases it.
        if (Interlocked.Exchange(ref _pending, 1) == 0)
        {
            _signal.Release();
        }
    }

    /// <summary>
    /// Waits for a wake-up or the timeout; true when the delivery should look in the store (the
    /// timeout passed, or <see cref="Wake"/> was called). The flags are cleared before the caller's
    /// round reads, so a commit that woke nobody is still seen by that round.
    /// </summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var woken = await _signal.WaitAsync(timeout, cancellationToken);
        Interlocked.Exchange(ref _pending, 0);
        return Interlocked.Exchange(ref _lookInStore, 0) == 1 || !woken;
    }

    public void Dispose() => _signal.Dispose();
}
