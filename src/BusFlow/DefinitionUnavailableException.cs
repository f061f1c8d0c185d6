namespace BusFlow;

/// <summary>
/// This process cannot decide a pipeline: it has no definition of the pipeline's name in the version
/// the pipeline started on (or, for a start, none of that name). The saga hands the message on to a
/// process that has it (docs/operations.md, "Deploying a changed pipeline"); once the wait runs out
/// (<c>BusFlow:DefinitionWait</c>) the pipeline fails with <c>unknown_version</c> (or
/// <c>unknown_definition</c> for a start).
/// </summary>
public sealed class DefinitionUnavailableException : Exception
{
    public DefinitionUnavailableException(Guid pipelineId, string definition, string? version, bool changedUnderSameVersion = false)
        : base(version is null
            ? $"Pipeline {pipelineId}: no definition named '{definition}' is registered in this process."
            : changedUnderSameVersion
                ? $"Pipeline {pipelineId} runs '{definition}' version '{version}', whose steps in this process are not the pipeline's: a changed definition must get another version."
                : $"Pipeline {pipelineId} runs '{definition}' version '{(version.Length == 0 ? "(not recorded)" : version)}', which is not registered in this process.")
    {
        PipelineId = pipelineId;
        Definition = definition;
        Version = version;
    }

    public DefinitionUnavailableException()
        : this("This process does not have the pipeline's definition.")
    {
    }

    public DefinitionUnavailableException(string message)
        : base(message)
    {
        Definition = "";
    }

    public DefinitionUnavailableException(string message, Exception innerException)
        : base(message, innerException)
    {
        Definition = "";
    }

    public Guid PipelineId { get; }

    /// <summary>The definition's name.</summary>
    public string Definition { get; }

    /// <summary>The version the pipeline runs on; null for a start naming an unknown definition.</summary>
    public string? Version { get; }
}
