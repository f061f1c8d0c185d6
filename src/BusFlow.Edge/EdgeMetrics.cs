using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace BusFlow.Edge;

/// <summary>
/// The edge's instruments (meter <c>BusFlow.Edge</c>), readable by dotnet-counters and OpenTelemetry,
/// and the same figures as a snapshot for <c>GET /api/metrics</c>.
/// </summary>
public sealed class EdgeMetrics : IDisposable
{
    public const string MeterName = "BusFlow.Edge";

    private readonly Meter _meter;
    private readonly Histogram<double> _broadcastLatency;
    private readonly double[] _recentLatencies = new double[4096];
    private long _latencySamples;
    private long _connections;
    private long _subscriptions;
    private long _catchingUp;
    private long _eventsIn;
    private long _eventsInProcess;
    private long _replayRowsRead;
    private long _eventsOut;
    private long _bytesOut;
    private long _refused;
    private long _stalledClosed;
    private long _clientErrors;

    public EdgeMetrics(IMeterFactory meters)
    {
        _meter = meters.Create(MeterName);
        _meter.CreateObservableUpDownCounter("busflow.edge.connections", () => Interlocked.Read(ref _connections), description: "Open WebSocket and SSE connections");
        _meter.CreateObservableUpDownCounter("busflow.edge.subscriptions", () => Interlocked.Read(ref _subscriptions), description: "Active subscriptions");
        _meter.CreateObservableUpDownCounter("busflow.edge.catching_up", () => Interlocked.Read(ref _catchingUp), description: "Subscriptions being served from the store");
        _meter.CreateObservableCounter("busflow.edge.events_in", () => Interlocked.Read(ref _eventsIn), description: "Events received from the bus");
        _meter.CreateObservableCounter("busflow.edge.events_in_process", () => Interlocked.Read(ref _eventsInProcess), description: "Events taken from a store committing in this process (their bus copies are dropped as repeats)");
        _meter.CreateObservableCounter("busflow.edge.replay_rows_read", () => Interlocked.Read(ref _replayRowsRead), description: "Event rows read from the store for subscribers catching up");
        _meter.CreateObservableCounter("busflow.edge.events_out", () => Interlocked.Read(ref _eventsOut), description: "Events written to subscribers");
        _meter.CreateObservableCounter("busflow.edge.bytes_out", () => Interlocked.Read(ref _bytesOut), unit: "By", description: "Event bytes written to subscribers");
        _broadcastLatency = _meter.CreateHistogram<double>("busflow.edge.broadcast_latency", unit: "ms", description: "Per event: from its arrival at the edge to its hand-off to the last live subscriber's buffer");
    }

    public void ConnectionOpened() => Interlocked.Increment(ref _connections);

    public void ConnectionClosed() => Interlocked.Decrement(ref _connections);

    public void ConnectionRefused() => Interlocked.Increment(ref _refused);

    public void ConnectionStalled() => Interlocked.Increment(ref _stalledClosed);

    public void SubscriptionAdded() => Interlocked.Increment(ref _subscriptions);

    public void SubscriptionRemoved() => Interlocked.Decrement(ref _subscriptions);

    public void CatchUpStarted() => Interlocked.Increment(ref _catchingUp);

    public void CatchUpEnded() => Interlocked.Decrement(ref _catchingUp);

    public void EventReceived() => Interlocked.Increment(ref _eventsIn);

    public void EventsTakenInProcess(int events) => Interlocked.Add(ref _eventsInProcess, events);

    /// <summary>Subscriptions being served from the store now.</summary>
    public long SubscribersCatchingUp => Interlocked.Read(ref _catchingUp);

    /// <summary>Event rows read from the store for catching-up subscribers so far.</summary>
    public long RowsReadForReplay => Interlocked.Read(ref _replayRowsRead);

    public void ReplayRowsRead(int rows) => Interlocked.Add(ref _replayRowsRead, rows);

    public void ClientError() => Interlocked.Increment(ref _clientErrors);

    public void EventWritten(int bytes) => EventsWritten(1, bytes);

    public void EventsWritten(int events, int bytes)
    {
        Interlocked.Add(ref _eventsOut, events);
        Interlocked.Add(ref _bytesOut, bytes);
    }

    public void Broadcast(long receivedAt)
    {
        var ms = Stopwatch.GetElapsedTime(receivedAt).TotalMilliseconds;
        _broadcastLatency.Record(ms);
        var slot = Interlocked.Increment(ref _latencySamples) % _recentLatencies.Length;
        _recentLatencies[slot] = ms;
    }

    /// <summary>The current figures; latency percentiles over the last 4,096 events handed to subscribers.</summary>
    public object Snapshot()
    {
        var count = (int)Math.Min(Interlocked.Read(ref _latencySamples), _recentLatencies.Length);
        var recent = _recentLatencies.AsSpan(0, count).ToArray();
        Array.Sort(recent);
        return new
        {
            connections = Interlocked.Read(ref _connections),
            connectionsRefused = Interlocked.Read(ref _refused),
            connectionsClosedStalled = Interlocked.Read(ref _stalledClosed),
            subscriptions = Interlocked.Read(ref _subscriptions),
            subscribersCatchingUp = Interlocked.Read(ref _catchingUp),
            eventsIn = Interlocked.Read(ref _eventsIn),
            eventsInProcess = Interlocked.Read(ref _eventsInProcess),
            replayRowsRead = Interlocked.Read(ref _replayRowsRead),
            eventsOut = Interlocked.Read(ref _eventsOut),
            bytesOut = Interlocked.Read(ref _bytesOut),
            clientErrors = Interlocked.Read(ref _clientErrors),
            broadcastLatencyMs = new
            {
                samples = count,
                p50 = Percentile(recent, 0.50),
                p99 = Percentile(recent, 0.99),
                max = count == 0 ? 0 : recent[^1],
            },
        };
    }

    private static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    public void Dispose() => _meter.Dispose();
}
