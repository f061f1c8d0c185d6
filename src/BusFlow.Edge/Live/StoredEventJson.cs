using System.Buffers.Text;
using System.Collections.Frozen;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using BusFlow.Contracts;
using BusFlow.Store;

namespace BusFlow.Edge.Live;

/// <summary>
/// Replay without a round trip through the event types: a stored event's JSON is what the edge
/// would send (the store records it with <see cref="PipelineEventJson"/>) except that it was
/// recorded before it had a position, so the row's position is spliced into its top-level
/// <c>position</c> property and the bytes go out as they are.
/// </summary>
internal static class StoredEventJson
{
    private static readonly FrozenSet<string> KnownTypes = typeof(PipelineEvent)
        .GetCustomAttributes<JsonDerivedTypeAttribute>()
        .Select(a => a.TypeDiscriminator as string)
        .OfType<string>()
        .ToFrozenSet(StringComparer.Ordinal);

    /// <summary>
    /// The event's JSON with its position; null when this version does not know its type or the
    /// JSON has no top-level numeric <c>position</c> (the caller then reads it the slow way).
    /// </summary>
    public static byte[]? WithPosition(StoredEvent e)
    {
        if (!KnownTypes.Contains(e.Type))
        {
            return null;
        }

        try
        {
            return Splice(e.Payload.Span, e.Position);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static byte[]? Splice(ReadOnlySpan<byte> json, long position)
    {
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return null;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isPosition = reader.ValueTextEquals("position"u8);
            if (!reader.Read())
            {
                return null;
            }

            if (!isPosition)
            {
                reader.Skip();
                continue;
            }

            if (reader.TokenType != JsonTokenType.Number)
            {
                return null;
            }

            var start = (int)reader.TokenStartIndex;
            var end = start + reader.ValueSpan.Length;
            Span<byte> digits = stackalloc byte[20];
            Utf8Formatter.TryFormat(position, digits, out var written);
            var result = new byte[json.Length - (end - start) + written];
            json[..start].CopyTo(result);
            digits[..written].CopyTo(result.AsSpan(start));
            json[end..].CopyTo(result.AsSpan(start + written));
            return result;
        }

        return null;
    }
}
