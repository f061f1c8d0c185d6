using System.Buffers;
using System.Data.Common;

namespace BusFlow.Store.Internal;

/// <summary>
/// Where one page of replayed rows puts its payloads: the column's UTF-8 bytes copied from the
/// provider's row buffer into chunks rented from the shared pool, front to back, instead of a new
/// array per row (replay of long histories is bound by per-row CPU, garbage collection included;
/// docs/performance.md). The page owns the chunks (<see cref="StoredEventPage.Release"/>).
/// </summary>
internal sealed class PayloadBuffers
{
    private const int ChunkSize = 256 * 1024;

    private byte[]? _chunk;
    private int _used;

    private List<byte[]>? _rented;

    /// <summary>The bytes of the text or binary column <paramref name="ordinal"/> of the current row.</summary>
    public ReadOnlyMemory<byte> Read(DbDataReader reader, int ordinal)
    {
        var length = checked((int)reader.GetBytes(ordinal, 0, null, 0, 0));
        if (length > ChunkSize / 4)
        {
            // A large payload gets its own array rather than wasting most of a chunk.
            var own = new byte[length];
            reader.GetBytes(ordinal, 0, own, 0, length);
            return own;
        }

        if (_chunk is null || _chunk.Length - _used < length)
        {
            _chunk = ArrayPool<byte>.Shared.Rent(ChunkSize);
            _used = 0;
            (_rented ??= []).Add(_chunk);
        }

        var read = (int)reader.GetBytes(ordinal, 0, _chunk, _used, length);
        var memory = _chunk.AsMemory(_used, read);
        _used += read;
        return memory;
    }

    /// <summary>Gives every rented chunk back: the read failed, or the page was released and nothing refers to them.</summary>
    public void Return()
    {
        foreach (var chunk in _rented ?? [])
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        _rented = null;
        _chunk = null;
    }
}
