using System.Diagnostics;
using BusFlow.Edge;
using BusFlow.Host.Samples;
using BusFlow.Store;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Trace;

namespace BusFlow.Host.Tests;

/// <summary>
/// One trace per pipeline run, across processes: the edge and the saga in this process with
/// OpenTelemetry's in-memory exporter, the step workers in a BusFlow.Host process of their own, on
/// RabbitMQ and PostgreSQL.
/// </summary>
public sealed class When_a_pipeline_is_traced_across_processes
{
    [ServerFact]
    public async Task Should_make_one_trace_from_the_start_request_through_the_worker_to_the_edge_push()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Postgres);
        await using var vhost = await RabbitMqVirtualHost.Create();
        var spans = new SpanList();
        await using var app = await StartAsync(spans, db, vhost.BusFlowSettings(), runWorkers: false);

        var settings = vhost.BusFlowSettings();
        settings["BusFlow:Roles"] = "worker";
        settings["BusFlow:Store:Provider"] = "Postgres";
        settings["BusFlow:Store:ConnectionString"] = db.ConnectionString;
        // The host records spans only with a collector to send them to; nothing listens on this one.
        settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9";
        await using var worker = await RunningHost.StartAsync(settings);

        var edge = new Uri(app.Urls.First());
        using var http = new HttpClient { BaseAddress = edge };
        await using var ws = await WsClient.ConnectAsync(new Uri($"ws://{edge.Authority}/ws"));
        await ws.SubscribeAsync("*");
        var id = await http.StartAsync("demo", new { delayMs = 5, progressTicks = 0 }, tags: new() { ["tenant"] = "acme" });
        var events = await ws.ReceiveUntilAsync(e => e.IsEvent() && e.PipelineId() == id && e.IsTerminal(), TimeSpan.FromSeconds(60));
        var seen = events.Where(e => e.IsEvent() && e.PipelineId() == id).ToList();
        Assert.Equal("PipelineCompleted", seen[^1].Type());
        app.Services.GetRequiredService<TracerProvider>().ForceFlush();
        await Task.Delay(200);
        var local = spans.Snapshot();

        // The start request is the trace's root.
        var root = Assert.Single(local, s => s.Kind == ActivityKind.Server && s.GetTagItem("http.route") as string == "/api/pipelines" && s.GetTagItem("http.request.method") as string == "POST");
        var trace = root.TraceId;
        List<Activity> Of(string name) => [.. local.Where(s => s.OperationName == name && (Guid?)s.GetTagItem("busflow.pipeline.id") == id)];

        // Every transition of the pipeline, its events' deliveries and their pushes to the subscriber, in that trace.
        var transitions = Of("busflow.transition");
        Assert.True(transitions.Count >= 6, $"{transitions.Count} transitions");
        Assert.All(transitions, t => Assert.Equal(trace, t.TraceId));
        Assert.All(transitions, t => Assert.Equal("demo", t.GetTagItem("busflow.definition")));
        Assert.All(transitions, t => Assert.Equal("acme", t.GetTagItem("busflow.tenant")));
        var pushed = Of(PipelineActivities.Push);
        Assert.NotEmpty(pushed);
        Assert.All(pushed, p => Assert.Equal(trace, p.TraceId));
        Assert.Equal(seen.Select(e => e.Type()).Order(), pushed.Select(p => (string)p.GetTagItem("busflow.event.type")!).Order());
        var delivered = Of(PipelineActivities.Deliver);
        Assert.NotEmpty(delivered);
        Assert.All(delivered, d => Assert.Equal(trace, d.TraceId));
        Assert.Superset(seen.Select(e => e.Seq()).ToHashSet(), delivered.Select(d => (long)d.GetTagItem("busflow.event.seq")!).ToHashSet());

        // The steps ran in the worker's process (no step span here), and the reports the saga took
        // from there continue the trace from spans of that process.
        Assert.Empty(Of("busflow.step"));
        var ids = local.Select(s => s.SpanId).ToHashSet();
        // (MassTransit's receive spans of the saga's queue: the start's has a parent here, each step report's one in the worker.)
        var fromWorker = local.Where(s => s.TraceId == trace && s.Kind == ActivityKind.Consumer && s.DisplayName == "busflow-pipeline receive" && !ids.Contains(s.ParentSpanId)).ToList();
        Assert.True(fromWorker.Count >= 5, $"{fromWorker.Count} receives from the worker");
        await app.StopAsync();
    }

    [Fact]
    public async Task Should_tag_each_step_run_in_the_saga_s_process_with_the_pipeline_step_attempt_and_tenant()
    {
        await using var db = await TestDatabase.Create(StoreProviderKind.Sqlite);
        var spans = new SpanList();
        await using var app = await StartAsync(spans, db, [], runWorkers: true);
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
        var id = await http.StartAsync("demo", new { delayMs = 5, progressTicks = 0, flakyStep = "enrich" }, tags: new() { ["tenant"] = "acme" });
        await http.WaitForEndAsync(id);
        app.Services.GetRequiredService<TracerProvider>().ForceFlush();
        // A co-located step's span ends after its outcome committed: the last may end just after the pipeline did.
        List<Activity> local = [], steps = [];
        for (var i = 0; i < 50 && steps.Count < 6; i++)
        {
            await Task.Delay(100);
            local = spans.Snapshot();
            steps = [.. local.Where(s => s.OperationName == "busflow.step" && (Guid?)s.GetTagItem("busflow.pipeline.id") == id)];
        }

        var root = Assert.Single(local, s => s.Kind == ActivityKind.Server && s.GetTagItem("http.route") as string == "/api/pipelines");
        Assert.All(steps, s => Assert.Equal(root.TraceId, s.TraceId));
        Assert.Equal(["clean", "enrich", "enrich", "fetch", "merge", "report"], steps.Select(s => (string)s.GetTagItem("busflow.step")!).Order());
        Assert.Equal([1, 2], steps.Where(s => (string)s.GetTagItem("busflow.step")! == "enrich").Select(s => (int)s.GetTagItem("busflow.attempt")!).Order());
        Assert.All(steps, s => Assert.Equal("acme", s.GetTagItem("busflow.tenant")));
        Assert.All(steps, s => Assert.Equal("demo", s.GetTagItem("busflow.definition")));
    }

    /// <summary>The edge and the saga in this process (and the sample workers when <paramref name="runWorkers"/>), its spans in <paramref name="spans"/>.</summary>
    private static async Task<WebApplication> StartAsync(SpanList spans, TestDatabase db, Dictionary<string, string?> settings, bool runWorkers)
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddOpenTelemetry().WithTracing(tracing => tracing
            .AddBusFlowInstrumentation()
            .AddAspNetCoreInstrumentation()
            .AddInMemoryExporter(spans));
        builder.Services.AddBusFlow(builder.Configuration, busflow =>
        {
            busflow.UseStore(db.Options());
            SamplePipelines.Register(busflow, runWorkers);
            busflow.UseEdge(builder.Configuration);
        });
        var app = builder.Build();
        app.MapBusFlowEdge();
        await app.StartAsync();
        return app;
    }

    /// <summary>The exporter's list, safe to read while spans of other threads still end.</summary>
    private sealed class SpanList : ICollection<Activity>
    {
        private readonly List<Activity> _spans = [];

        public int Count
        {
            get
            {
                lock (_spans)
                {
                    return _spans.Count;
                }
            }
        }

        public bool IsReadOnly => false;

        public List<Activity> Snapshot()
        {
            lock (_spans)
            {
                return [.. _spans];
            }
        }

        public void Add(Activity item)
        {
            lock (_spans)
            {
                _spans.Add(item);
            }
        }

        public void Clear()
        {
            lock (_spans)
            {
                _spans.Clear();
            }
        }

        public bool Contains(Activity item) => Snapshot().Contains(item);

        public void CopyTo(Activity[] array, int arrayIndex) => Snapshot().CopyTo(array, arrayIndex);

        public bool Remove(Activity item)
        {
            lock (_spans)
            {
                return _spans.Remove(item);
            }
        }

        public IEnumerator<Activity> GetEnumerator() => Snapshot().GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
