namespace BusFlow;

/// <summary>What kind of work a step does.</summary>
public enum StepKind
{
    /// <summary>One call to a worker.</summary>
    Task,

    /// <summary>One call to a worker per item of a list, results collected in order.</summary>
    Map,

    /// <summary>Runs another registered pipeline as a child and waits for it.</summary>
    Child,
}

/// <summary>What a step's final failure does to the rest of the pipeline.</summary>
public enum FailurePolicy
{
    /// <summary>Fail the pipeline at once and cancel the steps still running.</summary>
    FailPipeline,

    /// <summary>Skip the steps that depend on the failed one, let independent branches finish, then fail the pipeline.</summary>
    ContinueIndependent,
}

/// <summary>Retries with exponential back-off. <see cref="MaxAttempts"/> counts the first attempt.</summary>
public sealed record RetryPolicy(int MaxAttempts, TimeSpan InitialDelay, double Multiplier = 2, TimeSpan? MaxDelay = null)
{
    /// <summary>One attempt, no retries.</summary>
    public static readonly RetryPolicy None = new(1, TimeSpan.Zero);

    /// <summary>The delay before attempt <paramref name="nextAttempt"/> (2 or more).</summary>
    public TimeSpan DelayBefore(int nextAttempt)
    {
        var factor = Math.Pow(Multiplier, Math.Max(0, nextAttempt - 2));
        var delay = TimeSpan.FromTicks((long)Math.Min(InitialDelay.Ticks * factor, TimeSpan.MaxValue.Ticks / 2.0));
        return MaxDelay is { } max && delay > max ? max : delay;
    }
}

/// <summary>One validated step of a pipeline definition.</summary>
public sealed class StepDefinition
{
    internal StepDefinition(string name, StepKind kind)
    {
        Name = name;
        Kind = kind;
    }

    /// <summary>The step's name, unique in its pipeline.</summary>
    public string Name { get; }

    /// <summary>What the step does.</summary>
    public StepKind Kind { get; }

    /// <summary>Position in the definition's topological order.</summary>
    public int Index { get; internal set; }

    /// <summary>The parallel level: 0 for steps with no dependencies, else one more than the deepest dependency.</summary>
    public int Level { get; internal set; }

    /// <summary>The worker that runs the step (task and map steps).</summary>
    public string? Worker { get; internal set; }

    /// <summary>The child pipeline's definition (child steps).</summary>
    public string? ChildDefinition { get; internal set; }

    /// <summary>The name this step's output is known by to the steps that consume it.</summary>
    public string OutputName { get; internal set; } = "";

    /// <summary>Output names this step consumes; each is produced by exactly one step.</summary>
    public IReadOnlyList<string> Consumes { get; internal set; } = [];

    /// <summary>Steps this step waits for: explicit edges plus the producers of what it consumes.</summary>
    public IReadOnlyList<string> DependsOn { get; internal set; } = [];

    /// <summary>For map steps: the output name, or <c>input.</c>-prefixed pipeline input property, holding the list to map over.</summary>
    public string? MapSource { get; internal set; }

    /// <summary>For child steps: the consumed output handed to the child as its input; null hands over the pipeline's input.</summary>
    public string? ChildInputFrom { get; internal set; }

    /// <summary>Retry policy.</summary>
    public RetryPolicy Retry { get; internal set; } = RetryPolicy.None;

    /// <summary>Time allowed for one attempt, from dispatch to result; null for no limit.</summary>
    public TimeSpan? Timeout { get; internal set; }

    /// <summary>How long a suspension waits for an answer when the worker names no timeout.</summary>
    public TimeSpan SuspensionTimeout { get; internal set; } = TimeSpan.FromHours(24);

    /// <summary>What a final failure does.</summary>
    public FailurePolicy OnFailure { get; internal set; } = FailurePolicy.FailPipeline;

    /// <summary>For map steps: how many items run at once.</summary>
    public int MaxParallelism { get; internal set; } = int.MaxValue;

    /// <summary>
    /// For map steps: the most items one run may map over; a longer list fails the step with
    /// <c>map_too_large</c>. Every item is part of the pipeline's state, which each of its
    /// transitions writes, so a map's cost grows faster than its item count (docs/performance.md).
    /// </summary>
    public int MaxItems { get; internal set; } = DefaultMaxItems;

    /// <summary>The default of <see cref="MaxItems"/>.</summary>
    public const int DefaultMaxItems = 10_000;
}
