using BusFlow.Store;

namespace BusFlow.Edge.Live;

/// <summary>
/// One store read for every catch-up that asks for the same page at the same time: subscribers on
/// <c>*</c> with the same filter resuming from the same position (dashboards reconnecting to a
/// restarted node, say) join the read already in flight instead of each reading the page again.
/// Joined readers stay in step, since each asks for its next page when this one arrives. Each
/// reader gets the same page and releases it once; its buffers go back to the pool after the last.
/// </summary>
internal sealed class SharedPageReads
{
    private readonly Dictionary<(string Filter, long After, int Size), Flight> _inFlight = [];
    private readonly Lock _gate = new();

    /// <summary>Store reads started (not joined) so far.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    private long _reads;

    /// <summary>
    /// The page after <paramref name="after"/> of <paramref name="size"/> rows under <paramref name="filter"/>:
    /// read by <paramref name="read"/>, or joined when the same read is in flight. The read itself is
    /// not cancelled by one reader's token; a reader that stops waiting still releases its hold.
    /// </summary>
    public async Task<StoredEventPage> ReadAsync(string filter, long after, int size, Func<Task<StoredEventPage>> read, CancellationToken cancellationToken)
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
            _ = flight.Page.ContinueWith(t => t.Result.Release(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            throw;
        }
    }

    private async Task<StoredEventPage> RunAsync((string, long, int) key, Flight flight, Func<Task<StoredEventPage>> read)
    {
        await Task.Yield();
        try
        {
            var page = await read();
            lock (_gate)
            {
                // No one joins once the flight is gone, so its readers are counted.
                _inFlight.Remove(key);
                page.HoldFor(flight.Readers);
            }

            return page;
        }
        catch
        {
            lock (_gate)
            {
                _inFlight.Remove(key);
            }

            throw;
        }
    }

    private sealed class Flight
    {
        public int Readers { get; set; } = 1;

        public Task<StoredEventPage> Page { get; set; } = null!;
    }
}
