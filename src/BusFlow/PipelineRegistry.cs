using BusFlow.Internal;

namespace BusFlow;

/// <summary>The validated pipeline definitions (every registered version of each) and the step workers of this process.</summary>
public sealed class PipelineRegistry
{
    private readonly Dictionary<string, PipelineDefinition> _current;
    private readonly Dictionary<(string Name, string Version), PipelineDefinition> _versions;

    internal PipelineRegistry(IEnumerable<PipelineDefinition> definitions, IEnumerable<WorkerRegistration> workers)
    {
        var all = definitions.ToList();
        _current = all.Where(d => !d.Draining).ToDictionary(d => d.Name, StringComparer.Ordinal);
        _versions = all.ToDictionary(d => (d.Name, d.Version));
        Workers = workers.ToDictionary(w => w.Name, StringComparer.Ordinal);
    }

    /// <summary>The version of each definition that new pipelines start on.</summary>
    public IReadOnlyCollection<PipelineDefinition> Definitions => _current.Values;

    /// <summary>Every registered version of every definition, the draining ones included.</summary>
    public IEnumerable<PipelineDefinition> Versions => _versions.Values;

    internal IReadOnlyDictionary<string, WorkerRegistration> Workers { get; }

    /// <summary>The names of the workers this process runs.</summary>
    public IEnumerable<string> LocalWorkers => Workers.Keys;

    /// <summary>The version of <paramref name="name"/> that new pipelines start on, or null.</summary>
    public PipelineDefinition? Find(string name) => _current.GetValueOrDefault(name);

    /// <summary>
    /// The definition a pipeline started on: <paramref name="name"/> in <paramref name="version"/>, or
    /// null when this process does not have that version. A pipeline started before versions were
    /// recorded (an empty version) is decided on the current one.
    /// </summary>
    public PipelineDefinition? Find(string name, string version) =>
        version.Length == 0 ? Find(name) : _versions.GetValueOrDefault((name, version));

    /// <summary>
    /// The definition to decide a running pipeline on: its recorded version, provided its steps are
    /// the pipeline's (a definition changed under the same named version is not decided on). A
    /// pipeline started before versions were recorded gets the registered version whose steps are
    /// its own, the current one first. Null when this process has none.
    /// </summary>
    internal PipelineDefinition? Deciding(PipelineState state) =>
        state.DefinitionVersion.Length > 0
            ? _versions.GetValueOrDefault((state.Definition, state.DefinitionVersion)) is { } recorded && SameSteps(recorded, state) ? recorded : null
            : _versions.Values.Where(d => d.Name == state.Definition).OrderBy(d => d.Draining).FirstOrDefault(d => SameSteps(d, state));

    private static bool SameSteps(PipelineDefinition definition, PipelineState state) =>
        definition.Steps.Select(s => s.Name).SequenceEqual(state.Steps.Select(s => s.Name), StringComparer.Ordinal);
}
