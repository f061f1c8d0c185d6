namespace BusFlow.Internal;

/// <summary>What this process runs, which failures are transient, and how long a pipeline waits for a process with its definition version, as the builder said.</summary>
internal sealed record BusFlowRoles(bool RunSaga, IReadOnlyList<Func<Exception, bool>> TransientFailures, TimeSpan DefinitionWait)
{
    /// <summary>
    /// True for the failures the builder was told are transient, and for a disposed service
    /// provider: the process is going away (a hosted service registered after the bus failed to
    /// start, or the host is stopping) while the bus still hands it messages. Retried until the
    /// process ends, such a message goes back to its queue for another process; given up after a
    /// few quick retries, it went to the error queue and its pipeline never ended (found by the
    /// chaos suite). Any other disposed object (a step's effect that kept a scoped service, say) is
    /// a bug, which goes to the error queue after the quick retries.
    /// </summary>
    public bool IsTransient(Exception exception) => IsGoingAway(exception) || TransientFailures.Any(t => t(exception));

    private static bool IsGoingAway(Exception exception) => exception is ObjectDisposedException { ObjectName: "IServiceProvider" };
}
