using System.Collections.Frozen;
using System.Data.Common;

namespace BusFlow.Store.Internal;

/// <summary>
/// The event type column read without a new string per row: the names of the event types this
/// version knows (<see cref="PipelineEventJson.TypeNames"/>) are shared instances, looked up
/// from the column's characters; any other name is read as a new string.
/// </summary>
internal static class EventTypeNames
{
    private static readonly FrozenSet<string>.AlternateLookup<ReadOnlySpan<char>> Known =
        PipelineEventJson.TypeNames.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>The text column <paramref name="ordinal"/> of the current row; <paramref name="buffer"/> is reused between rows.</summary>
    public static string Read(DbDataReader reader, int ordinal, char[] buffer)
    {
        var length = checked((int)reader.GetChars(ordinal, 0, null, 0, 0));
        if (length > buffer.Length)
        {
            return reader.GetString(ordinal);
        }

        var read = (int)reader.GetChars(ordinal, 0, buffer, 0, length);
        return Known.TryGetValue(buffer.AsSpan(0, read), out var name) ? name : new string(buffer, 0, read);
    }
}
