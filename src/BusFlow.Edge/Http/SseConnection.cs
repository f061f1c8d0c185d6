using System.Text;
using BusFlow.Contracts;
using BusFlow.Edge.Auth;
using BusFlow.Edge.Live;
using Microsoft.AspNetCore.Http;

namespace BusFlow.Edge.Http;

/// <summary>
/// A server-sent event stream of one pipeline, or of every pipeline the caller may see
/// (<paramref name="everyPipeline"/>): <c>id:</c> is the seq (the position for every pipeline),
/// <c>event:</c> the type, <c>data:</c> the event JSON. One pipeline's stream ends after its final
/// event; EventSource clients reconnect with <c>Last-Event-ID</c> and get the rest.
/// </summary>
internal sealed class SseConnection(HttpResponse response, BusFlowPrincipal principal, EdgeOptions options, EdgeMetrics metrics, bool everyPipeline = false)
    : EdgeConnection(principal, options.OutboundBuffer, metrics)
{
    private static readonly byte[] Heartbeat = ": ping\n\n"u8.ToArray();
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();

    public async Task RunAsync(CancellationToken aborted)
    {
        response.Headers.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.Body.FlushAsync(aborted);
        using var timer = new PeriodicTimer(options.HeartbeatInterval);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(aborted, Closing.Token);
        var heartbeats = BeatAsync(timer, stop.Token);
        try
        {
            await RunWriterAsync(aborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client went away.
        }
        finally
        {
            RequestClose(CloseCodes.Normal, "", drain: false);
            await heartbeats;
        }
    }

    private async Task BeatAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                // Only when there is room: a heartbeat never waits behind a full buffer.
                _ = TryEnqueueControl(Heartbeat);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    protected override async ValueTask WriteEventAsync(EdgeEvent e, CancellationToken cancellationToken)
    {
        await AppendAsync(new WireEvent(e.Seq, e.Position, e.EventType, e.Json), cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }

    /// <summary>SSE sends every event as its own message, batched or not: the same write.</summary>
    protected override ValueTask WriteEachAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken) =>
        WriteEventsAsync(events, cancellationToken);

    protected override async ValueTask WriteEventsAsync(ArraySegment<WireEvent> events, CancellationToken cancellationToken)
    {
        foreach (var e in events)
        {
            await AppendAsync(e, cancellationToken);
        }

        await response.Body.FlushAsync(cancellationToken);
    }

    private async ValueTask AppendAsync(WireEvent e, CancellationToken cancellationToken)
    {
        var header = Encoding.UTF8.GetBytes($"id: {(everyPipeline ? e.Position : e.Seq)}\nevent: {e.EventType}\n");
        await response.Body.WriteAsync(header, cancellationToken);
        await response.Body.WriteAsync(DataPrefix, cancellationToken);
        await response.Body.WriteAsync(e.Json, cancellationToken);
        await response.Body.WriteAsync(EventEnd, cancellationToken);
        if (!everyPipeline && (e.EventType is nameof(PipelineCompleted) or nameof(PipelineFailed) or nameof(PipelineCancelled)))
        {
            RequestClose(CloseCodes.Normal, "pipeline finished", drain: true);
        }
    }

    protected override async ValueTask WriteControlAsync(byte[] json, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync(json, cancellationToken);
        await response.Body.FlushAsync(cancellationToken);
    }
}
