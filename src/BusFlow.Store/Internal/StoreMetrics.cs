using System.Diagnostics;
using System.Diagnostics.Metrics;
using BusFlow.Contracts;

namespace BusFlow.Store.Internal;

/// <summary>
/// The <c>BusFlow.Store</c> meter: how long the group commits take and how many transitions each
/// carries, and the outbox's events confirmed by the broker with their delivery lag (from the
/// saga's decision to the broker's confirmation). Tag: <c>busflow.store.provider</c>.
/// </summary>
internal sealed class StoreMetrics
{
    private readonly Histogram<double> _commitDuration;
    private readonly Histogram<int> _groupSize;
    private readonly Counter<long> _published;
    private readonly Histogram<double> _deliveryLag;
    private readonly KeyValuePair<string, object?> _provider;
    private readonly TimeProvider _time;

    public StoreMetrics(IMeterFactory meters, BusFlowStoreOptions options, TimeProvider time)
    {
        _time = time;
        _provider = new("busflow.store.provider", options.Provider.ToString());
        var meter = meters.Create("BusFlow.Store");
        _commitDuration = meter.CreateHistogram<double>(
            "busflow.store.commit.duration",
            "s",
            "Group commits of the saga's transitions: from the write transaction's start to its commit",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] });
        _groupSize = meter.CreateHistogram<int>(
            "busflow.store.commit.transitions",
            "{transition}",
            "Transitions and step outcomes committed together in one group",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64] });
        _published = meter.CreateCounter<long>("busflow.outbox.events.published", "{event}", "Stored events the broker confirmed (again after a restart: delivery is at least once)");
        _deliveryLag = meter.CreateHistogram<double>(
            "busflow.outbox.delivery.lag",
            "s",
            "Per event: from the saga's decision (the event's timestamp) to the broker's confirmation of its publish",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });
    }

    public void Committed(long startedAt, int members)
    {
        _commitDuration.Record(Stopwatch.GetElapsedTime(startedAt).TotalSeconds, _provider);
        _groupSize.Record(members, _provider);
    }

    public void Published(IReadOnlyList<PipelineEvent> events)
    {
        var now = _time.GetUtcNow();
        _published.Add(events.Count, _provider);
        foreach (var e in events)
        {
            _deliveryLag.Record(Math.Max(0, (now - e.Timestamp).TotalSeconds), _provider);
        }
    }
}
