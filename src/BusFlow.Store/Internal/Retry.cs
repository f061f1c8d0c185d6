namespace BusFlow.Store.Internal;

/// <summary>
/// How the store retries a unit of background work (a publish the broker has not confirmed, a
/// delivered mark, a co-located step's fold): until it succeeds or the process stops, with a
/// back-off that doubles from 200 ms up to 5 s, each failure reported. The delivery's own round
/// loop (OutboxDelivery) keeps its loop, which also resets its state after a failure, and waits the
/// same <see cref="Backoff"/>.
/// </summary>
internal static class Retry
{
    /// <summary>The wait after the <paramref name="failures"/>-th failure in a row.</summary>
    public static TimeSpan Backoff(int failures) => TimeSpan.FromMilliseconds(Math.Min(5000, 100 * Math.Pow(2, Math.Min(failures, 6))));

    /// <summary>
    /// Runs <paramref name="work"/> until it completes. A failure that <paramref name="retryable"/>
    /// accepts (while <paramref name="cancellationToken"/> is not cancelled) is reported to
    /// <paramref name="failed"/> with its count and retried after <see cref="Backoff"/>; any other
    /// failure, and the cancellation, end the call. Returns the failures before the success.
    /// </summary>
    public static async Task<int> UntilDoneAsync(
        Func<CancellationToken, Task> work,
        Func<Exception, bool> retryable,
        Action<Exception, int> failed,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        for (var failures = 0; ; failures++)
        {
            try
            {
                await work(cancellationToken);
                return failures;
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && retryable(ex))
            {
                failed(ex, failures + 1);
                await Task.Delay(Backoff(failures + 1), time, cancellationToken);
            }
        }
    }

    /// <summary>Every failure is worth retrying (the database or the broker is away).</summary>
    public static bool Always(Exception _) => true;
}
