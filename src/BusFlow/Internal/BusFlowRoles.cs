namespace BusFlow.Internal;

/// <summary>What this process runs, as the builder said.</summary>
internal sealed record BusFlowRoles(bool RunSaga);
