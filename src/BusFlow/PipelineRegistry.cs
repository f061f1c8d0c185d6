using BusFlow.Internal;

namespace BusFlow;

/// <summary>The validated pipeline definitions and the step workers of this process.</summary>
public sealed class PipelineRegistry
{
    private readonly Dictionary<string, PipelineDefinition> _definitions;

    internal PipelineRegistry(IEnumerable<PipelineDefinition> definitions, IEnumerable<WorkerRegistration> workers)
    {
        _definitions = definitions.ToDictionary(d => d.Name, StringComparer.Ordinal);
        Workers = workers.ToDictionary(w => w.Name, StringComparer.Ordinal);
    }

    public IReadOnlyCollection<PipelineDefinition> Definitions => _definitions.Values;

    internal IReadOnlyDictionary<string, WorkerRegistration> Workers { get; }

    /// <summary>The names of the workers this process runs.</summary>
    public IEnumerable<string> LocalWorkers => Workers.Keys;

    public PipelineDefinition? Find(string name) => _definitions.GetValueOrDefault(name);
}
