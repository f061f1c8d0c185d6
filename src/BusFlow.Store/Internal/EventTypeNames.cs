using System.Data.Common;
using System.Text;

namespace BusFlow.Store.Internal;

/// <summary>
/// The event type column read without a new string per row: the names of the event types this
/// version knows (<see cref="PipelineEventJson.TypeNames"/>) are shared instances, found from the
/// column's UTF-8 bytes; any other name is read as a new string. Bytes, not characters: Npgsql
/// serves <c>GetChars</c> through a text reader it sets up per call, which cost replay about a
/// tenth of its time, while <c>GetBytes</c> copies from its row buffer.
/// </summary>
internal static class EventTypeNames
{
    private static readonly (byte[] Utf8, string Name)[] Known = [.. PipelineEventJson.TypeNames.Select(name => (Encoding.UTF8.GetBytes(name), name))];

    /// <summary>The text column <paramref name="ordinal"/> of the current row; <paramref name="buffer"/> is reused between rows.</summary>
    public static string Read(DbDataReader reader, int ordinal, byte[] buffer)
    {
        var length = checked((int)reader.GetBytes(ordinal, 0, null, 0, 0));
        if (length > buffer.Length)
        {
            return reader.GetString(ordinal);
        }

        var read = buffer.AsSpan(0, (int)reader.GetBytes(ordinal, 0, buffer, 0, length));
        foreach (var (utf8, name) in Known)
        {
            if (read.SequenceEqual(utf8))
            {
                return name;
            }
        }

        return Encoding.UTF8.GetString(read);
    }
}
