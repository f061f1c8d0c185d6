namespace BusFlow.Internal;

/// <summary>What this process runs, which failures are transient, and how long a pipeline waits for a process with its definition version, as the builder said.</summary>
internal sealed record BusFlowRoles(bool RunSaga, IReadOnlyList<Func<Exception, bool>> TransientFailures, TimeSpan DefinitionWait)
{
    /// <summary>
    /// True for the failures the builder was told are transient, and for a disposed service: the
    /// process is going away (a hosted service registered after the bus failed to start, or the host
    /// is stopping) while the bus still hands it messages. Retried until the process ends, such a
    /// message goes back to its queue for another process; given up after a few quick retries, it
    /// went to the error queue and its pipeline never ended (found by the chaos suite).
    /// </summary>
    public bool IsTransient(Exception exception) => exception is ObjectDisposedException || TransientFailures.Any(t => t(exception));
}
