using BusFlow.Edge;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace BusFlow.Host;

/// <summary>
/// OpenTelemetry for the host: BusFlow's and MassTransit's traces and metrics, with ASP.NET Core's,
/// HttpClient's and the runtime's; metrics scraped at <c>/metrics</c> in Prometheus's format, and
/// everything exported with OTLP when the standard <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set
/// (<c>OTEL_SERVICE_NAME</c> and the other standard variables apply). docs/operations.md, "Telemetry".
/// </summary>
internal static class HostTelemetry
{
    public const string MetricsPath = "/metrics";

    public static void AddHostTelemetry(this WebApplicationBuilder builder, HostRoles roles)
    {
        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("busflow", serviceInstanceId: $"{Environment.MachineName}/{Environment.ProcessId}")
                .AddAttributes([new("busflow.roles", roles.ToString())]))
            .WithMetrics(metrics => metrics
                .AddBusFlowInstrumentation()
                .AddAspNetCoreInstrumentation()
                .AddRuntimeInstrumentation()
                .AddPrometheusExporter());
        if (string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            // No collector: no spans are recorded (nothing would take them), so a transition costs
            // nothing for tracing and events carry no traceParent.
            return;
        }

        telemetry
            .WithTracing(tracing => tracing
                .AddBusFlowInstrumentation()
                .AddAspNetCoreInstrumentation(o => o.Filter = http => !IsScrapeOrProbe(http.Request.Path))
                .AddHttpClientInstrumentation())
            .UseOtlpExporter();
    }

    /// <summary>
    /// Maps <c>/metrics</c>. On an edge it asks for the edge's callers like every route but the
    /// health checks (an API key or token when auth is on: Prometheus sends one with
    /// <c>authorization: { type: ApiKey, credentials: ... }</c>); elsewhere it is open like them.
    /// </summary>
    public static void MapHostMetrics(this WebApplication app, HostRoles roles)
    {
        if (roles.Edge)
        {
            app.RequireBusFlowCaller(MetricsPath);
        }

        app.MapPrometheusScrapingEndpoint(MetricsPath);
    }

    private static bool IsScrapeOrProbe(PathString path) => path.StartsWithSegments(MetricsPath) || path.StartsWithSegments("/health");
}
