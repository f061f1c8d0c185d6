using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace BusFlow.Edge.Http;

/// <summary>
/// Reads a request's JSON body within the edge's limits: at most <see cref="MaxBytes"/> (a chunked
/// body is refused as soon as it passes the limit, not buffered whole first), valid UTF-8, and no
/// lone surrogate escapes, each refused with its own problem code (docs/protocol.md).
/// </summary>
internal static class JsonBody
{
    public const int MaxBytes = 1024 * 1024;

    /// <summary>The body's root element, or the problem that refuses it; an empty body is <c>Undefined</c> when <paramref name="allowEmpty"/>.</summary>
    public static async Task<(JsonElement Body, ProblemHttpResult? Problem)> ReadAsync(HttpRequest request, bool allowEmpty = false)
    {
        if (request.ContentLength > MaxBytes)
        {
            return (default, TooLarge());
        }

        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk.AsMemory(0, (int)Math.Min(chunk.Length, MaxBytes + 1 - buffer.Length)), request.HttpContext.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > MaxBytes)
            {
                return (default, TooLarge());
            }
        }

        if (buffer.Length == 0 && allowEmpty)
        {
            return (default, null);
        }

        // JSON is UTF-8: a body that is not would reach the store with its bad bytes replaced.
        if (!System.Text.Unicode.Utf8.IsValid(buffer.GetBuffer().AsSpan(0, (int)buffer.Length)))
        {
            return (default, Problems.Invalid("invalid_string", "The body is not valid UTF-8."));
        }

        try
        {
            using var document = JsonDocument.Parse(buffer.ToArray());
            if (JsonStrings.FindInvalid(document.RootElement) is { } path)
            {
                return (default, Problems.Invalid("invalid_string", $"The string at {WebSockets.SubscribeRequest.Truncate(path)} is not valid Unicode (a lone surrogate escape)."));
            }

            return (document.RootElement.Clone(), null);
        }
        catch (JsonException ex)
        {
            return (default, Problems.Invalid("invalid_json", $"The body is not JSON: {ex.Message}"));
        }
    }

    private static ProblemHttpResult TooLarge() =>
        Problems.Of(StatusCodes.Status413PayloadTooLarge, "body_too_large", "Body too large", $"Bodies are limited to {MaxBytes} bytes.");
}
