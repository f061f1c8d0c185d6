using System.Text.Json;

namespace BusFlow.Client;

/// <summary>A pipeline's status as <c>GET /api/pipelines/{id}</c> returns it.</summary>
/// <param name="PipelineId">The pipeline.</param>
/// <param name="Definition">Its definition's name.</param>
/// <param name="Status"><c>Running</c>, <c>Completed</c>, <c>Failed</c> or <c>Cancelled</c>.</param>
/// <param name="LastSeq">The seq of its last event.</param>
/// <param name="Raw">The whole JSON document, with steps, attempts and timestamps.</param>
public sealed record PipelineStatus(Guid PipelineId, string Definition, string Status, long LastSeq, JsonElement Raw)
{
    /// <summary>The version of its definition the pipeline runs on to its end (empty for a pipeline started before versions were recorded).</summary>
    public string DefinitionVersion => Raw.TryGetProperty("definitionVersion", out var version) ? version.GetString() ?? "" : "";

    /// <summary>True once the pipeline completed, failed or was cancelled.</summary>
    public bool IsFinished => Status != "Running";

    /// <summary>The open suspensions: (step, suspend id) pairs a caller may answer.</summary>
    public IReadOnlyList<(string Step, Guid SuspendId)> Suspensions =>
    [
        .. Raw.GetProperty("steps").EnumerateArray().SelectMany(step => step.GetProperty("items").EnumerateArray()
            .Where(item => item.GetProperty("status").GetString() == "Suspended" && item.GetProperty("suspendId").ValueKind == JsonValueKind.String)
            .Select(item => (step.GetProperty("name").GetString()!, item.GetProperty("suspendId").GetGuid()))),
    ];
}
