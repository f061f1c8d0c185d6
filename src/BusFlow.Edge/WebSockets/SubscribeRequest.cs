using System.Text.Json;
using BusFlow.Contracts;

namespace BusFlow.Edge.WebSockets;

/// <summary>A parsed <c>subscribe</c> message, or the error that explains why it is not one.</summary>
internal sealed record SubscribeRequest(string Key, Guid? PipelineId, IReadOnlySet<string>? EventTypes, IReadOnlyDictionary<string, string>? Tags, long? After, bool Batch = false)
{
    /// <summary>The event type names a filter may use.</summary>
    public static readonly IReadOnlySet<string> KnownEventTypes = new HashSet<string>(StringComparer.Ordinal)
    {
        nameof(PipelineStarted), nameof(StepStarted), nameof(StepProgress), nameof(StepCompleted), nameof(StepFailed),
        nameof(StepSuspended), nameof(PipelineCompleted), nameof(PipelineFailed), nameof(PipelineCancelled),
    };

    public static (SubscribeRequest? Request, string? Code, string? Message) Parse(JsonElement message)
    {
        if (!TryParseKey(message, out var key, out var pipelineId, out var code, out var error))
        {
            return (null, code, error);
        }

        HashSet<string>? types = null;
        if (message.TryGetProperty("eventTypes", out var eventTypes) && eventTypes.ValueKind != JsonValueKind.Null)
        {
            if (eventTypes.ValueKind != JsonValueKind.Array)
            {
                return (null, ClientErrors.InvalidMessage, "eventTypes must be an array of event type names");
            }

            types = new HashSet<string>(StringComparer.Ordinal);
            foreach (var type in eventTypes.EnumerateArray())
            {
                if (type.ValueKind != JsonValueKind.String)
                {
                    return (null, ClientErrors.InvalidMessage, "eventTypes must be an array of event type names");
                }

                var name = type.GetString()!;
                if (!KnownEventTypes.Contains(name))
                {
                    return (null, ClientErrors.UnknownEventType, $"unknown event type '{Truncate(name)}'; known: {string.Join(", ", KnownEventTypes)}");
                }

                types.Add(name);
            }
        }

        Dictionary<string, string>? tags = null;
        if (message.TryGetProperty("tags", out var tagElement) && tagElement.ValueKind != JsonValueKind.Null)
        {
            if (tagElement.ValueKind != JsonValueKind.Object)
            {
                return (null, ClientErrors.InvalidMessage, "tags must be an object of string values");
            }

            tags = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var tag in tagElement.EnumerateObject())
            {
                if (tag.Value.ValueKind != JsonValueKind.String)
                {
                    return (null, ClientErrors.InvalidMessage, $"tag '{Truncate(tag.Name)}' must be a string");
                }

                tags[tag.Name] = tag.Value.GetString()!;
            }
        }

        long? after = null;
        if (message.TryGetProperty("after", out var afterElement) && afterElement.ValueKind != JsonValueKind.Null)
        {
            if (afterElement.ValueKind != JsonValueKind.Number || !afterElement.TryGetInt64(out var value) || value < 0)
            {
                return (null, ClientErrors.InvalidMessage, "after must be a non-negative integer (a seq for one pipeline, a position for *)");
            }

            after = value;
        }

        var batch = false;
        if (message.TryGetProperty("batch", out var batchElement) && batchElement.ValueKind != JsonValueKind.Null)
        {
            if (batchElement.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                return (null, ClientErrors.InvalidMessage, "batch must be true or false");
            }

            batch = batchElement.GetBoolean();
        }

        return (new SubscribeRequest(key, pipelineId, types, tags, after, batch), null, null);
    }

    /// <summary>Reads <c>pipelineId</c>: a pipeline's uuid, or <c>*</c>.</summary>
    public static bool TryParseKey(JsonElement message, out string key, out Guid? pipelineId, out string? code, out string? error)
    {
        key = "";
        pipelineId = null;
        code = null;
        error = null;
        if (!message.TryGetProperty("pipelineId", out var id) || id.ValueKind != JsonValueKind.String)
        {
            (code, error) = (ClientErrors.InvalidMessage, "pipelineId is required: a pipeline's uuid, or \"*\" for every pipeline");
            return false;
        }

        key = id.GetString()!;
        if (key == "*")
        {
            return true;
        }

        if (!Guid.TryParse(key, out var parsed))
        {
            (code, error) = (ClientErrors.InvalidPipelineId, $"'{Truncate(key)}' is not a pipeline id (a uuid) or \"*\"");
            return false;
        }

        pipelineId = parsed;
        key = parsed.ToString();
        return true;
    }

    public static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "...";
}
