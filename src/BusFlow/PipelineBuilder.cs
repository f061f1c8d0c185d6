using BusFlow.Internal;

namespace BusFlow;

/// <summary>
/// Declares a pipeline: sequential (<see cref="Then"/>), a dataflow DAG (<see cref="Step"/> with
/// <see cref="StepBuilder.Consumes"/>/<see cref="StepBuilder.Produces"/> or <see cref="StepBuilder.After"/>),
/// map-reduce (<see cref="Map"/>) and child pipelines (<see cref="Child"/>).
/// </summary>
public sealed class PipelineBuilder
{
    private readonly List<StepBuilder> _steps = [];
    private int _maxParallelism = int.MaxValue;

    internal PipelineBuilder(string name)
    {
        Name = name;
    }

    /// <summary>The pipeline's name.</summary>
    public string Name { get; }

    internal IReadOnlyList<StepBuilder> Steps => _steps;

    internal int MaxParallelismValue => _maxParallelism;

    internal InputSchema? InputSchema { get; private set; }

    internal string? VersionValue { get; private set; }

    internal bool IsDraining { get; private set; }

    /// <summary>
    /// Names this definition's version (letters, digits, <c>.</c>, <c>_</c>, <c>-</c>; up to 64). Without
    /// it the version is derived from the definition's shape: its steps, edges and policies.
    /// Pipelines finish on the version they started with (docs/operations.md, "Deploying a changed pipeline").
    /// </summary>
    public PipelineBuilder Version(string version)
    {
        VersionValue = version;
        return this;
    }

    /// <summary>
    /// Keeps this version only to finish the pipelines started on it: new starts take the version of
    /// the same name registered without <c>Draining()</c>. Register the old definition this way beside
    /// the new one while a deploy drains it.
    /// </summary>
    public PipelineBuilder Draining()
    {
        IsDraining = true;
        return this;
    }

    /// <summary>Declares the input the pipeline accepts; the edge refuses starts whose input does not fit.</summary>
    public PipelineBuilder Input(Action<InputSchema> configure)
    {
        InputSchema = new InputSchema();
        configure(InputSchema);
        return this;
    }

    /// <summary>Adds a step run by a worker (by default the worker named like the step).</summary>
    public PipelineBuilder Step(string name, Action<StepBuilder>? configure = null) => Add(new StepBuilder(name, StepKind.Task), configure);

    /// <summary>Adds a step that runs after the step declared just before it.</summary>
    public PipelineBuilder Then(string name, Action<StepBuilder>? configure = null)
    {
        var previous = _steps.Count > 0 ? _steps[^1].Name : null;
        return Add(new StepBuilder(name, StepKind.Task), s =>
        {
            if (previous is not null)
            {
                s.After(previous);
            }

            configure?.Invoke(s);
        });
    }

    /// <summary>Adds a map step: its worker runs once per item of a list (see <see cref="StepBuilder.Over"/>), results kept in order.</summary>
    public PipelineBuilder Map(string name, Action<StepBuilder> configure) => Add(new StepBuilder(name, StepKind.Map), configure);

    /// <summary>Adds a step that runs the registered pipeline <paramref name="definition"/> as a child and waits for it.</summary>
    public PipelineBuilder Child(string name, string definition, Action<StepBuilder>? configure = null)
    {
        var step = new StepBuilder(name, StepKind.Child) { ChildDefinition = definition };
        return Add(step, configure);
    }

    /// <summary>Limits how many work items of one pipeline instance run at once.</summary>
    public PipelineBuilder MaxParallelism(int limit)
    {
        _maxParallelism = limit;
        return this;
    }

    /// <summary>Applies a retry policy to every step declared so far that has none of its own.</summary>
    public PipelineBuilder DefaultRetry(int maxAttempts, TimeSpan initialDelay, double multiplier = 2, TimeSpan? maxDelay = null)
    {
        foreach (var step in _steps.Where(s => s.RetryPolicy is null))
        {
            step.Retry(maxAttempts, initialDelay, multiplier, maxDelay);
        }

        return this;
    }

    private PipelineBuilder Add(StepBuilder step, Action<StepBuilder>? configure)
    {
        configure?.Invoke(step);
        _steps.Add(step);
        return this;
    }

    /// <summary>Validates the declaration and builds the definition; throws <see cref="PipelineDefinitionException"/> listing every problem.</summary>
    public PipelineDefinition Build(IReadOnlySet<string>? knownWorkers = null, IReadOnlySet<string>? knownDefinitions = null) =>
        PipelineDefinitionValidator.Validate(this, knownWorkers, knownDefinitions);
}

/// <summary>Configures one step.</summary>
public sealed class StepBuilder
{
    internal StepBuilder(string name, StepKind kind)
    {
        Name = name;
        Kind = kind;
    }

    /// <summary>The step's name.</summary>
    public string Name { get; }

    internal StepKind Kind { get; }

    internal string? WorkerName { get; private set; }

    internal string? ChildDefinition { get; init; }

    internal string? OutputName { get; private set; }

    internal List<string> ConsumedNames { get; } = [];

    internal List<string> AfterNames { get; } = [];

    internal string? MapSource { get; private set; }

    internal string? ChildInput { get; private set; }

    internal RetryPolicy? RetryPolicy { get; private set; }

    internal TimeSpan? TimeoutValue { get; private set; }

    internal TimeSpan? SuspensionTimeoutValue { get; private set; }

    internal FailurePolicy FailurePolicy { get; private set; } = FailurePolicy.FailPipeline;

    internal int MaxParallelismValue { get; private set; } = int.MaxValue;

    internal int MaxItemsValue { get; private set; } = StepDefinition.DefaultMaxItems;

    /// <summary>Runs the step on the named worker (default: the step's name).</summary>
    public StepBuilder Worker(string worker)
    {
        WorkerName = worker;
        return this;
    }

    /// <summary>Adds explicit edges: this step waits for the named steps.</summary>
    public StepBuilder After(params string[] steps)
    {
        AfterNames.AddRange(steps);
        return this;
    }

    /// <summary>This step needs the named outputs; it waits for the steps producing them.</summary>
    public StepBuilder Consumes(params string[] outputs)
    {
        ConsumedNames.AddRange(outputs);
        return this;
    }

    /// <summary>Names this step's output (default: the step's name).</summary>
    public StepBuilder Produces(string output)
    {
        OutputName = output;
        return this;
    }

    /// <summary>
    /// For map steps: the list to map over, either an output another step produces (the step then
    /// waits for it) or <c>input.&lt;property&gt;</c> of the pipeline's input.
    /// </summary>
    public StepBuilder Over(string source)
    {
        MapSource = source;
        return this;
    }

    /// <summary>For child steps: hand this consumed output to the child as its input (default: the pipeline's input).</summary>
    public StepBuilder ChildInputFrom(string output)
    {
        ChildInput = output;
        return this;
    }

    /// <summary>Retries a failed attempt with exponential back-off; <paramref name="maxAttempts"/> counts the first.</summary>
    public StepBuilder Retry(int maxAttempts, TimeSpan initialDelay, double multiplier = 2, TimeSpan? maxDelay = null)
    {
        RetryPolicy = new RetryPolicy(maxAttempts, initialDelay, multiplier, maxDelay);
        return this;
    }

    /// <summary>Fails an attempt that has not reported a result this long after dispatch.</summary>
    public StepBuilder Timeout(TimeSpan timeout)
    {
        TimeoutValue = timeout;
        return this;
    }

    /// <summary>How long a suspension of this step waits for an answer when the worker names no timeout.</summary>
    public StepBuilder SuspensionTimeout(TimeSpan timeout)
    {
        SuspensionTimeoutValue = timeout;
        return this;
    }

    /// <summary>What this step's final failure does to the pipeline.</summary>
    public StepBuilder OnFailure(FailurePolicy policy)
    {
        FailurePolicy = policy;
        return this;
    }

    /// <summary>For map steps: how many items run at once.</summary>
    public StepBuilder MaxParallelism(int limit)
    {
        MaxParallelismValue = limit;
        return this;
    }

    /// <summary>
    /// For map steps: the most items one run may map over (10,000 unless set); a longer list
    /// fails the step with <c>map_too_large</c> instead of running.
    /// </summary>
    public StepBuilder MaxItems(int limit)
    {
        MaxItemsValue = limit;
        return this;
    }
}
