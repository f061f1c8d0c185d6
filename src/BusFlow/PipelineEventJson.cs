using System.Collections.Frozen;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using BusFlow.Contracts;

namespace BusFlow;

/// <summary>
/// The one JSON form of a pipeline event: camelCase, serialised through <see cref="PipelineEvent"/>
/// so it carries its <c>type</c>. The store logs it, the edge sends it, clients read it.
/// </summary>
public static class PipelineEventJson
{
    /// <summary>The serializer options of the wire contract (web defaults: camelCase, case-insensitive reads).</summary>
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web);

    /// <summary>The <c>type</c> names of the events this version knows (<see cref="PipelineEvent"/>'s discriminators).</summary>
    public static readonly FrozenSet<string> TypeNames = typeof(PipelineEvent)
        .GetCustomAttributes<JsonDerivedTypeAttribute>()
        .Select(a => a.TypeDiscriminator as string)
        .OfType<string>()
        .ToFrozenSet(StringComparer.Ordinal);

    public static string Serialize(PipelineEvent e) => JsonSerializer.Serialize(e, Options);

    public static byte[] SerializeToUtf8Bytes(PipelineEvent e) => JsonSerializer.SerializeToUtf8Bytes(e, Options);

    /// <summary>Reads an event back; null when the JSON names a type this version does not know or is not an event.</summary>
    public static PipelineEvent? TryDeserialize(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<PipelineEvent>(json, Options);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Reads an event back from its UTF-8 JSON; null as for the string form.</summary>
    public static PipelineEvent? TryDeserialize(ReadOnlySpan<byte> utf8Json)
    {
        try
        {
            return JsonSerializer.Deserialize<PipelineEvent>(utf8Json, Options);
        }
        catch (Exception ex) when (ex is JsonException or NotSupportedException)
        {
            return null;
        }
    }
}
