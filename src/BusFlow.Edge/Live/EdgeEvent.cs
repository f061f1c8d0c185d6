using System.Diagnostics;
using BusFlow.Contracts;

namespace BusFlow.Edge.Live;

/// <summary>An event on its way to subscribers, serialised once: every connection gets the same bytes.</summary>
internal sealed class EdgeEvent(PipelineEvent e)
{
    public PipelineEvent Event { get; } = e;

    public byte[] Json { get; } = PipelineEventJson.SerializeToUtf8Bytes(e);

    /// <summary>When the edge received it (Stopwatch ticks), for the broadcast-latency metric.</summary>
    public long ReceivedAt { get; } = Stopwatch.GetTimestamp();
}
