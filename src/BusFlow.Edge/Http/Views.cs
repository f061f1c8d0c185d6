using System.Text.Json;

namespace BusFlow.Edge.Http;

/// <summary>
/// What <c>GET /api/definitions</c> returns for one definition: the version new pipelines start on,
/// its steps, edges and parallel levels, and the older versions registered here to finish their pipelines.
/// </summary>
internal sealed record DefinitionView(string Name, string Version, IReadOnlyList<string> DrainingVersions, IReadOnlyList<InputPropertyView>? Input, IReadOnlyList<StepView> Steps, IReadOnlyList<EdgeView> Edges, IReadOnlyList<IReadOnlyList<string>> Levels)
{
    public static DefinitionView From(PipelineDefinition d, PipelineRegistry registry) => new(
        d.Name,
        d.Version,
        [.. registry.Versions.Where(v => v.Draining && v.Name == d.Name).Select(v => v.Version).Order(StringComparer.Ordinal)],
        d.Input is null ? null : [.. d.Input.Properties.Select(p => new InputPropertyView(p.Name, p.Kind.ToString(), p.Required))],
        [.. d.Steps.Select(s => new StepView(
            s.Name,
            s.Index,
            s.Level,
            s.Kind.ToString(),
            s.Worker,
            s.ChildDefinition,
            s.DependsOn,
            s.Consumes,
            s.OutputName,
            s.MapSource,
            s.Retry.MaxAttempts,
            s.Timeout?.TotalMilliseconds,
            s.OnFailure.ToString(),
            s.MaxParallelism == int.MaxValue ? null : s.MaxParallelism))],
        [.. d.Edges.Select(e => new EdgeView(e.From, e.To))],
        [.. d.Levels.Select(l => (IReadOnlyList<string>)[.. l.Select(s => s.Name)])]);
}

internal sealed record StepView(
    string Name,
    int Index,
    int Level,
    string Kind,
    string? Worker,
    string? ChildDefinition,
    IReadOnlyList<string> DependsOn,
    IReadOnlyList<string> Consumes,
    string Produces,
    string? Over,
    int MaxAttempts,
    double? TimeoutMs,
    string OnFailure,
    int? MaxParallelism);

internal sealed record EdgeView(string From, string To);

/// <summary>
/// One row of <c>GET /api/definitions/versions</c>: a definition version that this process has
/// registered or that pipelines still run on, with how many run on it now; a version with running
/// pipelines must stay registered in some saga process until they end (docs/operations.md).
/// </summary>
internal sealed record DefinitionVersionView(string Definition, string Version, bool Current, bool Registered, long Running);

internal sealed record InputPropertyView(string Name, string Kind, bool Required);

/// <summary>What <c>GET /api/pipelines/{id}</c> returns.</summary>
internal sealed record PipelineView(
    Guid PipelineId,
    string Definition,
    string DefinitionVersion,
    string Status,
    IReadOnlyDictionary<string, string> Tags,
    Guid? ParentPipelineId,
    long LastSeq,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    string? FailedStep,
    Contracts.StepError? Error,
    JsonElement? Input,
    IReadOnlyList<StepRunView> Steps)
{
    public static PipelineView From(PipelineState s) => new(
        s.CorrelationId,
        s.Definition,
        s.DefinitionVersion,
        s.Status.ToString(),
        s.Tags,
        s.ParentPipelineId,
        s.LastSeq,
        s.StartedAt,
        s.FinishedAt,
        s.FailedStep,
        s.Error,
        s.Input,
        [.. s.Steps.Select(StepRunView.From)]);
}

internal sealed record StepRunView(
    string Name,
    string Status,
    int Attempts,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    JsonElement? Result,
    Contracts.StepError? Error,
    IReadOnlyList<WorkItemView> Items)
{
    public static StepRunView From(StepRun r) => new(
        r.Name,
        r.Status.ToString(),
        r.Items.Count == 0 ? 0 : r.Items.Max(i => i.Attempt),
        r.StartedAt,
        r.FinishedAt,
        r.Result,
        r.Error,
        [.. r.Items.Select(i => new WorkItemView(i.Index, i.Status.ToString(), i.Attempt, i.DueAt, i.Error, i.SuspendId, i.ChildPipelineId))]);
}

internal sealed record WorkItemView(int? Index, string Status, int Attempt, DateTimeOffset? DueAt, Contracts.StepError? Error, Guid? SuspendId, Guid? ChildPipelineId);

/// <summary>One row of <c>GET /api/pipelines</c>.</summary>
internal sealed record PipelineSummaryView(
    Guid PipelineId,
    string Definition,
    string DefinitionVersion,
    string Status,
    IReadOnlyDictionary<string, string> Tags,
    Guid? ParentPipelineId,
    long LastSeq,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    int StepsTotal,
    IReadOnlyList<string> CompletedSteps)
{
    public static PipelineSummaryView From(PipelineState s, PipelineDefinition? definition) => new(
        s.CorrelationId,
        s.Definition,
        s.DefinitionVersion,
        s.Status.ToString(),
        s.Tags,
        s.ParentPipelineId,
        s.LastSeq,
        s.StartedAt,
        s.FinishedAt,
        definition?.Steps.Count ?? s.Steps.Count,
        [.. s.Steps.Where(r => r.Status is StepStatus.Completed).Select(r => r.Name)]);
}
