namespace BusFlow.Internal;

/// <summary>What this process runs, and which failures are transient, as the builder said.</summary>
internal sealed record BusFlowRoles(bool RunSaga, IReadOnlyList<Func<Exception, bool>> TransientFailures)
{
    public bool IsTransient(Exception exception) => TransientFailures.Any(t => t(exception));
}
