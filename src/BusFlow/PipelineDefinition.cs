namespace BusFlow;

/// <summary>A validated pipeline: its steps in topological order and their parallel levels.</summary>
public sealed class PipelineDefinition
{
    internal PipelineDefinition(string name, IReadOnlyList<StepDefinition> steps, int maxParallelism, InputSchema? input = null)
    {
        Input = input;
        Name = name;
        Steps = steps;
        MaxParallelism = maxParallelism;
        Levels = steps.GroupBy(s => s.Level).OrderBy(g => g.Key).Select(g => (IReadOnlyList<StepDefinition>)[.. g]).ToList();
        _byName = steps.ToDictionary(s => s.Name, StringComparer.Ordinal);
        Sinks = [.. steps.Where(s => !steps.Any(other => other.DependsOn.Contains(s.Name)))];
    }

    private readonly Dictionary<string, StepDefinition> _byName;

    /// <summary>The name pipelines are started by.</summary>
    public string Name { get; }

    /// <summary>
    /// The definition's version: given with <see cref="PipelineBuilder.Version"/>, else derived from its
    /// shape (steps, edges, policies). Recorded on each pipeline at its start; the pipeline is decided
    /// on this version until it ends, and only by a process that has it registered.
    /// </summary>
    public string Version { get; internal init; } = "";

    /// <summary>Registered only to finish the pipelines started on it (<see cref="PipelineBuilder.Draining"/>); new starts take another version.</summary>
    public bool Draining { get; internal init; }

    /// <summary>Steps in topological order (ties broken by declaration order).</summary>
    public IReadOnlyList<StepDefinition> Steps { get; }

    /// <summary>Steps grouped by parallel level: every step of a level can run at once.</summary>
    public IReadOnlyList<IReadOnlyList<StepDefinition>> Levels { get; }

    /// <summary>Steps nothing depends on; their results are the pipeline's outputs.</summary>
    public IReadOnlyList<StepDefinition> Sinks { get; }

    /// <summary>The input the pipeline accepts, when it declared one.</summary>
    public InputSchema? Input { get; }

    /// <summary>How many work items of one pipeline instance run at once.</summary>
    public int MaxParallelism { get; }

    /// <summary>The edges (from, to) of the DAG.</summary>
    public IEnumerable<(string From, string To)> Edges => Steps.SelectMany(s => s.DependsOn.Select(d => (d, s.Name)));

    /// <summary>Finds a step by name.</summary>
    public StepDefinition this[string stepName] => _byName[stepName];

    /// <summary>Finds a step by name, or null.</summary>
    public StepDefinition? Find(string stepName) => _byName.GetValueOrDefault(stepName);
}
