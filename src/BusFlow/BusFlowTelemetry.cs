namespace BusFlow;

/// <summary>
/// The names BusFlow's instruments and activities are published under, for OpenTelemetry,
/// dotnet-counters and dotnet-trace: meters <c>BusFlow</c> (pipelines and steps, in the saga's
/// process), <c>BusFlow.Store</c> (commits and the outbox) and <c>BusFlow.Edge</c> (connections and
/// subscribers); activity source <c>BusFlow</c>.
/// </summary>
public static class BusFlowTelemetry
{
    /// <summary>The meter of pipelines and steps, and the activity source of BusFlow's spans.</summary>
    public const string Name = "BusFlow";

    /// <summary>Every BusFlow meter: <c>BusFlow</c>, <c>BusFlow.Store</c>, <c>BusFlow.Edge</c>.</summary>
    public static readonly IReadOnlyList<string> MeterNames = [Name, "BusFlow.Store", "BusFlow.Edge"];
}
