using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace BusFlow.Edge.Http;

/// <summary>The long-poll answer <c>{"events":[...],"next":N}</c>; <c>next</c> is the <c>after</c> for the next poll.</summary>
internal sealed class EventPageResult(ReplayPage page) : IResult
{
    public async Task ExecuteAsync(HttpContext httpContext)
    {
        httpContext.Response.ContentType = "application/json; charset=utf-8";
        await using var writer = new Utf8JsonWriter(httpContext.Response.Body);
        writer.WriteStartObject();
        writer.WriteStartArray("events");
        foreach (var e in page.Events)
        {
            writer.WriteRawValue(PipelineEventJson.SerializeToUtf8Bytes(e), skipInputValidation: true);
        }

        writer.WriteEndArray();
        writer.WriteNumber("next", page.Last);
        writer.WriteEndObject();
        await writer.FlushAsync(httpContext.RequestAborted);
    }
}
