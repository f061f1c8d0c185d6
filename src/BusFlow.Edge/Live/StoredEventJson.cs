using System.Buffers;
using System.Text.Json;

namespace BusFlow.Edge.Live;

/// <summary>
/// Replay without a round trip through the event types: a stored event's JSON is what the edge
/// would send (the store records it with <see cref="PipelineEventJson"/>) except that it was
/// recorded before it had a position, so the row's position is spliced into its top-level
/// <c>position</c> property and the bytes go out as they are.
/// </summary>
internal static class StoredEventJson
{
    /// <summary>
    /// Where the event's top-level <c>position</c> number is in its stored JSON; false when this
    /// version does not know its type or the JSON has no top-level numeric <c>position</c> (the
    /// caller then reads it the slow way).
    /// </summary>
    public static bool TryFindPosition(StoredEvent e, out int start, out int end)
    {
        start = end = 0;
        if (!PipelineEventJson.TypeNames.Contains(e.Type))
        {
            return false;
        }

        var json = e.Payload.Span;
        if (TryFindLeadingPosition(json, e.Type, out start, out end))
        {
            return true;
        }

        try
        {
            return TryFindTopLevelPosition(json, out start, out end) || TryWalkToPosition(json, out start, out end);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static ReadOnlySpan<byte> PositionProperty => ",\"position\":"u8;

    /// <summary>
    /// The layout this version writes: <c>{"type":"&lt;type&gt;","pipelineId":"&lt;uuid&gt;","seq":&lt;n&gt;,"position":&lt;n&gt;,</c>
    /// (the envelope's first properties, <see cref="Contracts.PipelineEvent"/>), checked byte by byte, so
    /// the number found is the top level's without reading further. Events stored by earlier versions
    /// (the envelope after the event's own properties) take the searches below.
    /// </summary>
    private static bool TryFindLeadingPosition(ReadOnlySpan<byte> json, string type, out int start, out int end)
    {
        start = end = 0;
        ReadOnlySpan<byte> open = "{\"type\":\""u8;
        ReadOnlySpan<byte> pipeline = "\",\"pipelineId\":\""u8;
        ReadOnlySpan<byte> seq = "\",\"seq\":"u8;
        var i = open.Length + type.Length;
        if (!json.StartsWith(open) || json.Length < i + pipeline.Length + 36 + seq.Length + 1 + PositionProperty.Length + 2)
        {
            return false;
        }

        for (var c = 0; c < type.Length; c++)
        {
            if (json[open.Length + c] != type[c])
            {
                return false;
            }
        }

        if (!json[i..].StartsWith(pipeline))
        {
            return false;
        }

        i += pipeline.Length + 36;
        if (!json[i..].StartsWith(seq))
        {
            return false;
        }

        i += seq.Length;
        var digits = i;
        while (i < json.Length && char.IsAsciiDigit((char)json[i]))
        {
            i++;
        }

        if (i == digits || !json[i..].StartsWith(PositionProperty))
        {
            return false;
        }

        start = i + PositionProperty.Length;
        end = start;
        while (end < json.Length && char.IsAsciiDigit((char)json[end]))
        {
            end++;
        }

        return end > start && end < json.Length && json[end] is (byte)',' or (byte)'}';
    }

    private static readonly SearchValues<byte> Structure = SearchValues.Create("\"{}[]"u8);

    private static readonly SearchValues<byte> StringEnd = SearchValues.Create("\"\\"u8);

    /// <summary>
    /// Finds the top-level position's number from the end, without reading the document up to it:
    /// the serializer writes a derived type's own properties (user data such as a chunk or an input,
    /// which may hold a "position" of its own) before the envelope's, so the top-level one is the
    /// last or close to it. A candidate counts only if the JSON after its number closes no object
    /// before the root's closing brace, which proves it sits in the root object.
    /// </summary>
    private static bool TryFindTopLevelPosition(ReadOnlySpan<byte> json, out int start, out int end)
    {
        var searched = json;
        int at;
        while ((at = searched.LastIndexOf(PositionProperty)) >= 0)
        {
            start = at + PositionProperty.Length;
            end = start;
            while (end < json.Length && char.IsAsciiDigit((char)json[end]))
            {
                end++;
            }

            if (end > start && end < json.Length && json[end] is (byte)',' or (byte)'}' && ClosesOnlyTheRoot(json[end..]))
            {
                return true;
            }

            searched = json[..at];
        }

        start = end = 0;
        return false;
    }

    /// <summary>Whether the first container this JSON (which starts outside any string) closes is closed by its last byte.</summary>
    private static bool ClosesOnlyTheRoot(ReadOnlySpan<byte> rest)
    {
        var depth = 0;
        var i = 0;
        while (true)
        {
            var next = rest[i..].IndexOfAny(Structure);
            if (next < 0)
            {
                return false;
            }

            i += next;
            switch (rest[i])
            {
                case (byte)'"':
                    i++;
                    while (true)
                    {
                        var stop = rest[i..].IndexOfAny(StringEnd);
                        if (stop < 0)
                        {
                            return false;
                        }

                        i += stop;
                        if (rest[i] == (byte)'"')
                        {
                            break;
                        }

                        i += 2;
                        if (i >= rest.Length)
                        {
                            return false;
                        }
                    }

                    break;
                case (byte)'{' or (byte)'[':
                    depth++;
                    break;
                default:
                    if (--depth < 0)
                    {
                        return i == rest.Length - 1;
                    }

                    break;
            }

            i++;
        }
    }

    /// <summary>The slow way, for JSON not laid out as the serializer writes it: reads the top level up to <c>position</c>.</summary>
    private static bool TryWalkToPosition(ReadOnlySpan<byte> json, out int start, out int end)
    {
        start = end = 0;
        var reader = new Utf8JsonReader(json);
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isPosition = reader.ValueTextEquals("position"u8);
            if (!reader.Read())
            {
                return false;
            }

            if (!isPosition)
            {
                reader.Skip();
                continue;
            }

            if (reader.TokenType != JsonTokenType.Number)
            {
                return false;
            }

            start = (int)reader.TokenStartIndex;
            end = start + reader.ValueSpan.Length;
            return true;
        }

        return false;
    }
}
