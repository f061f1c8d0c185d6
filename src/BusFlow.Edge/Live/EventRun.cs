using System.Buffers;

namespace BusFlow.Edge.Live;

/// <summary>One event as it goes on the wire: its order fields and its JSON.</summary>
internal readonly record struct WireEvent(long Seq, long Position, string EventType, ReadOnlyMemory<byte> Json);

/// <summary>
/// Events written at once: replayed events of one subscription, handed to the connection as one
/// buffer item so that a catch-up pays the buffer's hand-over once per run instead of once per
/// event, or live events of batched subscriptions that waited next to each other. Its array is
/// pooled; the replay chunks it lists go back to the pool once the run is written.
/// </summary>
internal sealed class EventRun
{
    /// <summary>Whether the run goes out as one frame (a subscription with <c>batch</c>) or one frame per event.</summary>
    public bool Batch { get; init; } = true;

    private WireEvent[] _events = ArrayPool<WireEvent>.Shared.Rent(EdgeConnection.MaxBatchEvents);

    public int Count { get; private set; }

    public int Bytes { get; private set; }

    public List<byte[]> Release { get; } = [];

    public bool Full => Count >= EdgeConnection.MaxBatchEvents || Bytes >= EdgeConnection.MaxBatchBytes;

    public ArraySegment<WireEvent> Events => new(_events, 0, Count);

    public void Add(WireEvent e, byte[]? releaseBefore)
    {
        _events[Count++] = e;
        Bytes += e.Json.Length;
        if (releaseBefore is not null)
        {
            Release.Add(releaseBefore);
        }
    }

    /// <summary>Gives the array and the listed chunks back to their pools.</summary>
    public void Return()
    {
        foreach (var chunk in Release)
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        ArrayPool<WireEvent>.Shared.Return(_events, clearArray: true);
        _events = [];
    }
}
