using System.Data.Common;
using System.Reflection;
using System.Text.Json.Serialization;
using BusFlow.Contracts;

namespace BusFlow.Store.Internal;

/// <summary>
/// The event type column read without a new string per row: the names of the event types this
/// version knows (the <see cref="PipelineEvent"/> discriminators) are shared instances, looked up
/// from the column's characters; any other name is read as a new string.
/// </summary>
internal static class EventTypeNames
{
    private static readonly Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> Known =
        typeof(PipelineEvent).GetCustomAttributes<JsonDerivedTypeAttribute>()
            .Select(a => (string)a.TypeDiscriminator!)
            .ToDictionary(name => name, StringComparer.Ordinal)
            .GetAlternateLookup<ReadOnlySpan<char>>();

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
