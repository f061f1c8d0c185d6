using BusFlow.Contracts;

namespace BusFlow.Edge.Auth;

/// <summary>
/// Who is calling, as far as pipelines go. A principal with a tenant sees and controls only the
/// pipelines tagged with that tenant; one without (the unauthenticated embedded default, or an
/// operator) sees every pipeline.
/// </summary>
public sealed record BusFlowPrincipal(string Name, string? Tenant)
{
    /// <summary>The tag that carries a pipeline's tenant; set by the edge at start and inherited by child pipelines.</summary>
    public const string TenantTag = PipelineTags.Tenant;

    /// <summary>The caller when the edge runs without auth.</summary>
    public static readonly BusFlowPrincipal Anonymous = new("anonymous", null);

    public bool Sees(IReadOnlyDictionary<string, string> tags) =>
        Tenant is null || (tags.TryGetValue(TenantTag, out var tenant) && tenant == Tenant);

    public bool Sees(PipelineEvent e) => Sees(e.Tags);
}
