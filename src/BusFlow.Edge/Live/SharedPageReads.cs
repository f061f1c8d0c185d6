
namespace BusFlow.Edge.Live;

/// <summary>
/// One store read for every catch-up that asks for the same page at the same time: subscribers on
/// <c>*</c> with the same filter resuming from the same position (dashboards reconnecting to a
/// restarted node, say) join the read already in flight instead of each reading the page again.
/// Joined readers stay in step, since each asks for its next page when this one arrives. Each
/// reader gets the same page and releases it once; its buffers go back to the pool after the last.
/// A read whose readers all stopped waiting is cancelled.
/// </summary>
internal sealed class SharedPageReads
{
    private readonly Dictionary<(string Filter, long After, int Size), Flight> _inFlight = [];
    private readonly Lock _gate = new();
    private long _reads;

    /// <summary>Store reads started (not joined) so far.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>
    /// The page after <paramref name="after"/> of <paramref name="size"/> rows under <paramref name="filter"/>:
    /// read by <paramref name="read"/> (with a token cancelled once no reader waits for it), or
    /// joined when the same read is in flight.
    /// </summary>
    public async Task<StoredEventPage> ReadAsync(string filter, long after, int size, Func<CancellationToken, Task<StoredEventPage>> read, CancellationToken cancellationToken)
    {
        var key = (filter, after, size);
        Flight flight;
        lock (_gate)
        {
            if (_inFlight.TryGetValue(key, out var joined))
            {
                flight = joined;
                flight.Readers++;
            }
            else
            {
                flight = new Flight();
                _inFlight[key] = flight;
                Interlocked.Increment(ref _reads);
                flight.Page = RunAsync(key, flight, read);
            }
        }

        try
        {
            return await flight.Page.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Leave(key, flight);
            throw;
        }
    }

    /// <summary>A reader stops waiting: before the page came, it no longer counts (the last one cancels the read); after, it releases its hold.</summary>
    private void Leave((string, long, int) key, Flight flight)
    {
        lock (_gate)
        {
            if (!flight.Done)
            {
                if (--flight.Readers == 0)
                {
                    _inFlight.Remove(key);
                    flight.Stop.Cancel();
                }

                return;
            }
        }

        _ = flight.Page.ContinueWith(t => t.Result.Release(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
    }

    private async Task<StoredEventPage> RunAsync((string, long, int) key, Flight flight, Func<CancellationToken, Task<StoredEventPage>> read)
    {
        await Task.Yield();
        StoredEventPage page;
        try
        {
            page = await read(flight.Stop.Token);
        }
        catch
        {
            lock (_gate)
            {
                Finish(key, flight);
            }

            throw;
        }

        lock (_gate)
        {
            // No one joins once the flight is done, so its readers are counted.
            Finish(key, flight);
            page.HoldFor(Math.Max(1, flight.Readers));
            if (flight.Readers == 0)
            {
                // Every reader left while the read finished anyway.
                page.Release();
            }
        }

        return page;
    }

    private void Finish((string, long, int) key, Flight flight)
    {
        if (_inFlight.TryGetValue(key, out var current) && ReferenceEquals(current, flight))
        {
            _inFlight.Remove(key);
        }

        flight.Done = true;
        flight.Stop.Dispose();
    }

    private sealed class Flight
    {
        public int Readers { get; set; } = 1;

        public bool Done { get; set; }

        public CancellationTokenSource Stop { get; } = new();

        public Task<StoredEventPage> Page { get; set; } = null!;
    }
}
