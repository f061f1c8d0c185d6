namespace BusFlow;

/// <summary>A pipeline definition is invalid; <see cref="Errors"/> lists every problem found.</summary>
public sealed class PipelineDefinitionException : Exception
{
    /// <summary>Creates the exception from the problems found.</summary>
    public PipelineDefinitionException(IReadOnlyList<string> errors)
        : base("Invalid pipeline definition: " + string.Join(" ", errors))
    {
        Errors = errors;
    }

    /// <summary>Creates the exception with one problem.</summary>
    public PipelineDefinitionException(string message)
        : this([message])
    {
    }

    /// <summary>Creates the exception with no detail.</summary>
    public PipelineDefinitionException()
        : this("Invalid pipeline definition.")
    {
    }

    /// <summary>Creates the exception with one problem and its cause.</summary>
    public PipelineDefinitionException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errors = [message];
    }

    /// <summary>Every problem found, each naming the pipeline and step it concerns.</summary>
    public IReadOnlyList<string> Errors { get; } = [];
}
