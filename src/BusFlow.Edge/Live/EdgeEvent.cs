using System.Diagnostics;
using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Edge.Live;

/// <summary>An event on its way to subscribers, serialised once: every connection gets the same bytes.</summary>
internal sealed class EdgeEvent
{
    private PipelineEvent? _event;

    /// <summary>A live event (from the bus, or read back from the store): serialised here.</summary>
    public EdgeEvent(PipelineEvent e)
    {
        _event = e;
        Seq = e.Seq;
        Position = e.Position;
        EventType = e.EventType;
        Json = PipelineEventJson.SerializeToUtf8Bytes(e);
        ReceivedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>A replayed event whose stored JSON goes out as it is (<see cref="StoredEventJson"/>).</summary>
    public EdgeEvent(WireEvent replayed, byte[]? releaseBefore)
    {
        Seq = replayed.Seq;
        Position = replayed.Position;
        EventType = replayed.EventType;
        Json = replayed.Json;
        ReleaseBefore = releaseBefore;
    }

    /// <summary>The event; for a replayed one read from its JSON on first use (the hot paths use the fields below).</summary>
    public PipelineEvent Event => _event ??= JsonSerializer.Deserialize<PipelineEvent>(Json.Span, PipelineEventJson.Options)!;

    public long Seq { get; }

    public long Position { get; }

    public string EventType { get; }

    public ReadOnlyMemory<byte> Json { get; }

    /// <summary>A pooled chunk of earlier replayed frames, all written once the writer gets to this one (<see cref="ReplayFrames"/>).</summary>
    public byte[]? ReleaseBefore { get; }

    /// <summary>When the edge received or read it (Stopwatch ticks), for the broadcast-latency metric; 0 for one replayed as stored, which is not broadcast.</summary>
    public long ReceivedAt { get; }
}
