using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;

namespace BusFlow.Edge.Http;

/// <summary>
/// The sizes a start may have: its tags are copied onto every event the pipeline records, and its
/// input is stored with its state and read by its steps, so one careless or hostile start must not
/// multiply into megabytes per event. Each refusal names the limit and its setting.
/// </summary>
internal static class StartLimits
{
    public static ProblemHttpResult? Check(JsonElement? input, Dictionary<string, string> tags, EdgeOptions options)
    {
        if (input is { } value && JsonMarshal.GetRawUtf8Value(value).Length > options.MaxInputBytes)
        {
            return Problems.Invalid("input_too_large", $"\"input\" is {JsonMarshal.GetRawUtf8Value(value).Length} bytes of JSON; the limit is {options.MaxInputBytes} (BusFlow:Edge:MaxInputBytes).");
        }

        if (tags.Count > options.MaxTags)
        {
            return Problems.Invalid("tags_too_large", $"{tags.Count} tags; the limit is {options.MaxTags} (BusFlow:Edge:MaxTags).");
        }

        foreach (var (key, text) in tags)
        {
            if (key.Length > options.MaxTagKeyLength)
            {
                return Problems.Invalid("tags_too_large", $"Tag key '{Problems.Truncate(key)}' is {key.Length} characters; the limit is {options.MaxTagKeyLength} (BusFlow:Edge:MaxTagKeyLength).");
            }

            if (text.Length > options.MaxTagValueLength)
            {
                return Problems.Invalid("tags_too_large", $"Tag '{Problems.Truncate(key)}' has a value of {text.Length} characters; the limit is {options.MaxTagValueLength} (BusFlow:Edge:MaxTagValueLength).");
            }
        }

        return null;
    }
}
