using System.Buffers;
using System.Buffers.Text;

namespace BusFlow.Edge.Live;

/// <summary>
/// Where one catch-up writes the frames it replays: chunks rented from the shared pool and filled
/// front to back, instead of a new array per event (replay of long histories is bound by per-event
/// CPU, garbage collection included; docs/performance.md). A chunk goes back to the pool when the
/// connection's writer reaches the first frame of the next one: it writes in order, so by then every
/// frame of the earlier chunk is on the wire. The last chunk is left to the garbage collector, as are
/// the chunks of a connection that closes without writing what it had.
/// </summary>
internal sealed class ReplayFrames
{
    private const int ChunkSize = 256 * 1024;

    private byte[]? _chunk;
    private int _used;

    /// <summary>
    /// The stored JSON with the number between <paramref name="start"/> and <paramref name="end"/>
    /// replaced by <paramref name="position"/>, and the chunk the writer returns to the pool before
    /// sending it (the one this frame did not fit in any more; null while frames share a chunk).
    /// </summary>
    public (ReadOnlyMemory<byte> Frame, byte[]? ReleaseBefore) Splice(ReadOnlySpan<byte> json, int start, int end, long position)
    {
        Span<byte> digits = stackalloc byte[20];
        Utf8Formatter.TryFormat(position, digits, out var written);
        var length = json.Length - (end - start) + written;
        byte[]? release = null;
        Memory<byte> frame;
        if (length > ChunkSize)
        {
            frame = new byte[length];
        }
        else
        {
            if (_chunk is null || _chunk.Length - _used < length)
            {
                release = _chunk;
                _chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
                _used = 0;
            }

            frame = _chunk.AsMemory(_used, length);
            _used += length;
        }

        var span = frame.Span;
        json[..start].CopyTo(span);
        digits[..written].CopyTo(span[start..]);
        json[end..].CopyTo(span[(start + written)..]);
        return (frame, release);
    }
}
