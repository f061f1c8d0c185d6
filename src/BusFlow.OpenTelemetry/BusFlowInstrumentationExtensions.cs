using BusFlow;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace OpenTelemetry;

/// <summary>
/// Adds BusFlow's meters and activities to an application's OpenTelemetry set-up, with
/// MassTransit's (BusFlow's messages travel on MassTransit, which carries the trace context in
/// their headers): <c>tracing.AddBusFlowInstrumentation()</c>, <c>metrics.AddBusFlowInstrumentation()</c>.
/// </summary>
public static class BusFlowInstrumentationExtensions
{
    /// <summary>MassTransit's activity source and meter.</summary>
    public const string MassTransit = "MassTransit";

    /// <summary>BusFlow's activities (start request, transitions, step runs, event pushes) and MassTransit's (send, publish, consume).</summary>
    public static TracerProviderBuilder AddBusFlowInstrumentation(this TracerProviderBuilder tracing)
    {
        ArgumentNullException.ThrowIfNull(tracing);
        return tracing.AddSource(BusFlowTelemetry.Name, MassTransit);
    }

    /// <summary>BusFlow's meters (<see cref="BusFlowTelemetry.MeterNames"/>) and MassTransit's.</summary>
    public static MeterProviderBuilder AddBusFlowInstrumentation(this MeterProviderBuilder metrics)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        return metrics.AddMeter([.. BusFlowTelemetry.MeterNames, MassTransit]);
    }
}
