using System.Text.Json;
using BusFlow.Edge.Auth;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace BusFlow.Edge.Http;

/// <summary>
/// A start as <c>POST /api/pipelines</c> takes it, read and checked: a registered definition, an
/// input that fits its schema and the limits, string tags, and the caller's tenant tag set from
/// its credentials (a different one given is refused).
/// </summary>
internal sealed record StartRequest(PipelineDefinition Definition, JsonElement? Input, Dictionary<string, string> Tags)
{
    public string Name => Definition.Name;

    /// <summary>The request read from <paramref name="body"/>, or the problem that refuses it (the first found).</summary>
    public static (StartRequest? Request, ProblemHttpResult? Problem) Read(JsonElement body, PipelineRegistry registry, EdgeOptions options, BusFlowPrincipal principal)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            return (null, Problems.Invalid("invalid_body", "The body is a JSON object: {\"definition\":\"demo\",\"input\":{...},\"tags\":{\"k\":\"v\"}}."));
        }

        if (!body.TryGetProperty("definition", out var nameElement) || nameElement.ValueKind != JsonValueKind.String)
        {
            return (null, Problems.Invalid("invalid_body", "\"definition\" is required: the name of a registered pipeline definition."));
        }

        var name = nameElement.GetString()!;
        if (registry.Find(name) is not { } definition)
        {
            return (null, Problems.Of(
                StatusCodes.Status422UnprocessableEntity,
                "unknown_definition",
                "Unknown pipeline definition",
                $"No pipeline definition is named '{Problems.Truncate(name)}'. Known: {string.Join(", ", registry.Definitions.Select(d => d.Name).Order(StringComparer.Ordinal))}."));
        }

        JsonElement? input = body.TryGetProperty("input", out var inputElement) && inputElement.ValueKind != JsonValueKind.Null ? inputElement.Clone() : null;
        if (definition.Input?.Validate(input) is { Count: > 0 } inputErrors)
        {
            return (null, InvalidInput(name, inputErrors));
        }

        var (tags, tagProblem) = ReadTags(body);
        if (tagProblem is not null)
        {
            return (null, tagProblem);
        }

        if (StartLimits.Check(input, tags!, options) is { } tooLarge)
        {
            return (null, tooLarge);
        }

        if (principal.Tenant is { } tenant)
        {
            if (tags!.TryGetValue(BusFlowPrincipal.TenantTag, out var given) && given != tenant)
            {
                return (null, Problems.Invalid("tenant_tag_reserved", $"The '{BusFlowPrincipal.TenantTag}' tag is set from your credentials."));
            }

            tags[BusFlowPrincipal.TenantTag] = tenant;
        }

        return (new StartRequest(definition, input, tags!), null);
    }

    /// <summary>
    /// What tells a repeat of this start from another start under the same Idempotency-Key: the
    /// definition, the input and the tags (in key order).
    /// </summary>
    public string Fingerprint() =>
        $"{Name}\n{(Input is { } i ? JsonSerializer.Serialize(i) : "null")}\n{string.Join('\n', Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => $"{t.Key}={t.Value}"))}";

    private static (Dictionary<string, string>? Tags, ProblemHttpResult? Problem) ReadTags(JsonElement body)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!body.TryGetProperty("tags", out var tagElement) || tagElement.ValueKind == JsonValueKind.Null)
        {
            return (tags, null);
        }

        if (tagElement.ValueKind != JsonValueKind.Object)
        {
            return (null, Problems.Invalid("invalid_tags", "\"tags\" is an object of string values."));
        }

        foreach (var tag in tagElement.EnumerateObject())
        {
            if (tag.Value.ValueKind != JsonValueKind.String)
            {
                return (null, Problems.Invalid("invalid_tags", $"Tag '{Problems.Truncate(tag.Name)}' must be a string."));
            }

            tags[tag.Name] = tag.Value.GetString()!;
        }

        return (tags, null);
    }

    private static ProblemHttpResult InvalidInput(string name, IReadOnlyList<string> errors) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status422UnprocessableEntity,
            title: "Invalid input",
            detail: $"The input does not fit the '{name}' pipeline: {string.Join("; ", errors)}.",
            type: "https://busflow.dev/problems/invalid_input",
            extensions: new Dictionary<string, object?> { ["code"] = "invalid_input", ["errors"] = errors });
}
