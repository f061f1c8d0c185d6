namespace BusFlow.Internal;

/// <summary>What this process runs, which failures are transient, and how long a pipeline waits for a process with its definition version, as the builder said.</summary>
internal sealed record BusFlowRoles(bool RunSaga, IReadOnlyList<Func<Exception, bool>> TransientFailures, TimeSpan DefinitionWait)
{
    public bool IsTransient(Exception exception) => TransientFailures.Any(t => t(exception));
}
