namespace BusFlow.Internal;

/// <summary>Turns a <see cref="PipelineBuilder"/> into a <see cref="PipelineDefinition"/>, collecting every problem.</summary>
internal static class PipelineDefinitionValidator
{
    public const string InputPrefix = "input.";

    public static PipelineDefinition Validate(PipelineBuilder builder, IReadOnlySet<string>? knownWorkers, IReadOnlySet<string>? knownDefinitions)
    {
        var errors = new List<string>();
        var where = $"Pipeline '{builder.Name}':";
        if (string.IsNullOrWhiteSpace(builder.Name))
        {
            errors.Add("A pipeline needs a non-empty name.");
        }

        if (builder.Steps.Count == 0)
        {
            errors.Add($"{where} it has no steps; add at least one with Step(), Then(), Map() or Child().");
        }

        if (builder.VersionValue is { } version && !DefinitionVersion.IsValid(version))
        {
            errors.Add($"{where} the version '{version}' is not usable; use letters, digits, '.', '_' and '-', up to 64 characters.");
        }

        if (builder.MaxParallelismValue < 1)
        {
            errors.Add($"{where} MaxParallelism must be at least 1 (was {builder.MaxParallelismValue}).");
        }

        foreach (var duplicate in builder.Steps.GroupBy(s => s.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            errors.Add($"{where} the step name '{duplicate.Key}' is used {duplicate.Count()} times; step names must be unique.");
        }

        var stepNames = builder.Steps.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var producers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var step in builder.Steps)
        {
            var output = step.OutputName ?? step.Name;
            if (!producers.TryAdd(output, step.Name) && producers[output] != step.Name)
            {
                errors.Add($"{where} the output '{output}' is produced by both '{producers[output]}' and '{step.Name}'.");
            }
        }

        var dependencies = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var step in builder.Steps)
        {
            var at = $"{where} step '{step.Name}'";
            if (string.IsNullOrWhiteSpace(step.Name))
            {
                errors.Add($"{where} a step has an empty name.");
            }

            var deps = new List<string>();
            foreach (var after in step.AfterNames)
            {
                if (!stepNames.Contains(after))
                {
                    errors.Add($"{at} runs after '{after}', which is not a step of this pipeline.");
                }
                else if (after == step.Name)
                {
                    errors.Add($"{at} runs after itself (cycle: {step.Name} -> {step.Name}).");
                }
                else
                {
                    deps.Add(after);
                }
            }

            foreach (var consumed in step.ConsumedNames.Concat(MapSourceOutput(step)))
            {
                if (!producers.TryGetValue(consumed, out var producer))
                {
                    errors.Add($"{at} consumes '{consumed}', which no step produces.");
                }
                else if (producer == step.Name)
                {
                    errors.Add($"{at} consumes its own output '{consumed}' (cycle: {step.Name} -> {step.Name}).");
                }
                else
                {
                    deps.Add(producer);
                }
            }

            if (step.Kind == StepKind.Map && step.MapSource is null)
            {
                errors.Add($"{at} is a map step but says nothing to map over; call Over(\"<output>\") or Over(\"input.<property>\").");
            }

            switch (step.Kind)
            {
                case StepKind.Map or StepKind.Task:
                    var worker = step.WorkerName ?? step.Name;
                    if (knownWorkers is not null && !knownWorkers.Contains(worker))
                    {
                        errors.Add($"{at} runs on worker '{worker}', which is not registered; register it with AddWorker(\"{worker}\", ...) or declare it with AddRemoteWorker(\"{worker}\").");
                    }

                    break;
                case StepKind.Child:
                    if (knownDefinitions is not null && !knownDefinitions.Contains(step.ChildDefinition!))
                    {
                        errors.Add($"{at} runs the child pipeline '{step.ChildDefinition}', which is not registered.");
                    }
                    else if (step.ChildDefinition == builder.Name)
                    {
                        errors.Add($"{at} runs its own pipeline '{builder.Name}' as a child, which would never end.");
                    }

                    if (step.ChildInput is not null && !step.ConsumedNames.Contains(step.ChildInput))
                    {
                        errors.Add($"{at} hands '{step.ChildInput}' to its child but does not consume it; add Consumes(\"{step.ChildInput}\").");
                    }

                    break;
            }

            if (step.RetryPolicy is { } retry && !(retry.MaxAttempts >= 1 && retry.InitialDelay >= TimeSpan.Zero && retry.Multiplier >= 1 && double.IsFinite(retry.Multiplier) && (retry.MaxDelay is null || retry.MaxDelay >= TimeSpan.Zero)))
            {
                errors.Add($"{at} has an invalid retry policy: attempts must be at least 1, the delays not negative and the multiplier a number of at least 1.");
            }

            if (step.SuspensionTimeoutValue is { } suspension && suspension <= TimeSpan.Zero)
            {
                errors.Add($"{at} has a suspension timeout of {suspension}; it must be positive.");
            }

            if (step.TimeoutValue is { } timeout && timeout <= TimeSpan.Zero)
            {
                errors.Add($"{at} has a timeout of {timeout}; it must be positive.");
            }

            if (step.MaxParallelismValue < 1)
            {
                errors.Add($"{at} has MaxParallelism {step.MaxParallelismValue}; it must be at least 1.");
            }

            if (step.MaxItemsValue < 1)
            {
                errors.Add($"{at} has MaxItems {step.MaxItemsValue}; it must be at least 1.");
            }

            dependencies[step.Name] = deps.Distinct(StringComparer.Ordinal).ToList();
        }

        // Cycles are looked for even when other problems were found, so one run reports them all.
        var declared = builder.Steps.Select(s => s.Name).Distinct(StringComparer.Ordinal).ToList();
        var order = TopologicalOrder(declared, dependencies, out var cycle);
        if (cycle is not null)
        {
            errors.Add($"{where} the steps form a cycle: {string.Join(" -> ", cycle)}.");
        }

        if (errors.Count > 0)
        {
            throw new PipelineDefinitionException(errors);
        }

        var byName = builder.Steps.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var steps = new List<StepDefinition>();
        var levels = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var name in order)
        {
            var b = byName[name];
            var level = dependencies[name].Count == 0 ? 0 : dependencies[name].Max(d => levels[d]) + 1;
            levels[name] = level;
            steps.Add(new StepDefinition(name, b.Kind)
            {
                Index = steps.Count,
                Level = level,
                Worker = b.Kind == StepKind.Child ? null : b.WorkerName ?? b.Name,
                ChildDefinition = b.ChildDefinition,
                OutputName = b.OutputName ?? b.Name,
                Consumes = [.. b.ConsumedNames.Concat(MapSourceOutput(b)).Distinct(StringComparer.Ordinal)],
                DependsOn = dependencies[name],
                MapSource = b.MapSource,
                ChildInputFrom = b.ChildInput,
                Retry = b.RetryPolicy ?? RetryPolicy.None,
                Timeout = b.TimeoutValue,
                SuspensionTimeout = b.SuspensionTimeoutValue ?? TimeSpan.FromHours(24),
                OnFailure = b.FailurePolicy,
                MaxParallelism = b.MaxParallelismValue,
                MaxItems = b.MaxItemsValue,
            });
        }

        return new PipelineDefinition(builder.Name, steps, builder.MaxParallelismValue, builder.InputSchema)
        {
            Version = builder.VersionValue ?? DefinitionVersion.Of(builder.Name, steps, builder.MaxParallelismValue),
            Draining = builder.IsDraining,
        };
    }

    private static IEnumerable<string> MapSourceOutput(StepBuilder step) =>
        step.MapSource is { } source && !source.StartsWith(InputPrefix, StringComparison.Ordinal) ? [source] : [];

    /// <summary>Kahn's algorithm, ties broken by declaration order; on a cycle, returns one cycle's steps.</summary>
    private static List<string> TopologicalOrder(List<string> declared, Dictionary<string, List<string>> dependencies, out List<string>? cycle)
    {
        var remaining = dependencies.ToDictionary(kv => kv.Key, kv => kv.Value.Count, StringComparer.Ordinal);
        var order = new List<string>();
        var done = new HashSet<string>(StringComparer.Ordinal);
        while (order.Count < declared.Count)
        {
            var next = declared.FirstOrDefault(n => !done.Contains(n) && dependencies[n].All(done.Contains));
            if (next is null)
            {
                cycle = FindCycle(declared.Where(n => !done.Contains(n)).ToList(), dependencies, done);
                return order;
            }

            done.Add(next);
            order.Add(next);
        }

        cycle = null;
        return order;
    }

    private static List<string> FindCycle(List<string> stuck, Dictionary<string, List<string>> dependencies, HashSet<string> done)
    {
        // Every stuck step waits for another stuck step, so walking "waits for" edges must revisit one.
        var path = new List<string>();
        var current = stuck[0];
        while (!path.Contains(current))
        {
            path.Add(current);
            current = dependencies[current].First(d => !done.Contains(d));
        }

        var cycle = path.Skip(path.IndexOf(current)).Reverse().ToList();
        cycle.Add(cycle[0]);
        return cycle;
    }
}
