namespace BusFlow.Contracts;

/// <summary>Tags with a meaning of their own to BusFlow.</summary>
public static class PipelineTags
{
    /// <summary>
    /// The tenant a pipeline belongs to (set by the edge from the caller's credentials). Stores keep
    /// it in a column of its own on pipelines and events, so that a tenant's list and catch-up read
    /// only that tenant's rows.
    /// </summary>
    public const string Tenant = "tenant";
}
