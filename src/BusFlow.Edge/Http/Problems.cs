using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace BusFlow.Edge.Http;

/// <summary>RFC 7807 problem details with a machine-readable <c>code</c> (docs/protocol.md lists them).</summary>
internal static class Problems
{
    public static ProblemHttpResult Of(int status, string code, string title, string? detail = null) =>
        TypedResults.Problem(
            statusCode: status,
            title: title,
            detail: detail,
            type: $"https://busflow.dev/problems/{code}",
            extensions: new Dictionary<string, object?> { ["code"] = code });

    public static ProblemHttpResult PipelineNotFound(Guid id) =>
        Of(StatusCodes.Status404NotFound, "pipeline_not_found", "Pipeline not found", $"There is no pipeline {id}.");

    public static ProblemHttpResult InvalidPipelineId(string id) =>
        Of(StatusCodes.Status400BadRequest, "invalid_pipeline_id", "Invalid pipeline id", $"'{Truncate(id)}' is not a pipeline id (a uuid).");

    public static ProblemHttpResult Unauthorized() =>
        Of(StatusCodes.Status401Unauthorized, "unauthorized", "Authentication required", "Send an API key (X-Api-Key) or a bearer token.");

    public static ProblemHttpResult Invalid(string code, string detail) =>
        Of(StatusCodes.Status400BadRequest, code, "Invalid request", detail);

    public static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "...";
}
