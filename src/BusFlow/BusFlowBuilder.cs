using System.Text.RegularExpressions;
using BusFlow.Internal;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace BusFlow;

/// <summary>Declares what this process contributes: pipelines (run by its saga), step workers and observers.</summary>
public sealed partial class BusFlowBuilder
{
    private readonly List<PipelineBuilder> _pipelines = [];
    private readonly Dictionary<string, WorkerRegistration> _workers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _remoteWorkers = new(StringComparer.Ordinal);

    internal BusFlowBuilder(IBusRegistrationConfigurator bus)
    {
        Bus = bus;
    }

    /// <summary>The service collection, for registering what handlers and observers need.</summary>
    public IServiceCollection Services => Bus;

    /// <summary>
    /// MassTransit's registration that BusFlow is added to, for parts that add consumers or
    /// endpoints of their own (the web edge adds its event consumer here).
    /// </summary>
    public IBusRegistrationConfigurator Bus { get; }

    /// <summary>Run the pipeline saga in this process (default true). Turn off in worker-only processes.</summary>
    public bool RunSaga { get; set; } = true;

    /// <summary>How the saga keeps its state; the default keeps it in memory (tests and demos only).</summary>
    public Action<ISagaRegistrationConfigurator<PipelineState>> SagaRepository { get; set; } = r => r.InMemoryRepository();

    internal List<Func<Exception, bool>> TransientFailures { get; } = [];

    /// <summary>
    /// How long a message of a pipeline waits for a saga process that has the pipeline's definition
    /// version (during a rolling deploy, old and new processes serve side by side) before the pipeline
    /// fails with <c>unknown_version</c>; a start naming an unknown definition fails with
    /// <c>unknown_definition</c> after the same wait. Default 5 minutes; zero fails at once.
    /// <c>BusFlow:DefinitionWait</c> overrides it.
    /// </summary>
    public TimeSpan DefinitionWait { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Marks failures (a database or broker away) after which the saga and workers wait and retry
    /// the message until it succeeds, instead of giving up after a few quick retries.
    /// </summary>
    public BusFlowBuilder TreatAsTransient(Func<Exception, bool> isTransient)
    {
        TransientFailures.Add(isTransient);
        return this;
    }

    /// <summary>Registers a pipeline definition; it is validated when <c>AddBusFlow</c> completes.</summary>
    public BusFlowBuilder AddPipeline(string name, Action<PipelineBuilder> configure)
    {
        var pipeline = new PipelineBuilder(name);
        configure(pipeline);
        _pipelines.Add(pipeline);
        return this;
    }

    /// <summary>Registers a step worker class, resolved from a DI scope for every attempt.</summary>
    public BusFlowBuilder AddWorker<THandler>(string name, int concurrency = WorkerRegistration.DefaultConcurrency)
        where THandler : class, IStepHandler
    {
        Services.AddScoped<THandler>();
        return AddWorker(new WorkerRegistration(ValidWorkerName(name), concurrency, (sp, ctx) => sp.GetRequiredService<THandler>().HandleAsync(ctx)));
    }

    /// <summary>Registers a step worker as a delegate.</summary>
    public BusFlowBuilder AddWorker(string name, Func<StepContext, Task<StepResult>> handler, int concurrency = WorkerRegistration.DefaultConcurrency) =>
        AddWorker(new WorkerRegistration(ValidWorkerName(name), concurrency, (_, ctx) => handler(ctx)));

    /// <summary>
    /// Makes an existing MassTransit consumer that answers <typeparamref name="TRequest"/> with
    /// <typeparamref name="TResponse"/> a step worker, without changing it: each attempt sends the
    /// request built by <paramref name="toRequest"/> (to <paramref name="destination"/>, or published)
    /// and the response becomes the step's output.
    /// </summary>
    public BusFlowBuilder AddRequestWorker<TRequest, TResponse>(
        string name,
        Func<StepContext, TRequest> toRequest,
        Func<TResponse, object?>? toResult = null,
        Uri? destination = null,
        int concurrency = WorkerRegistration.DefaultConcurrency)
        where TRequest : class
        where TResponse : class
    {
        return AddWorker(new WorkerRegistration(ValidWorkerName(name), concurrency, async (sp, ctx) =>
        {
            var clients = sp.GetRequiredService<IScopedClientFactory>();
            var timeout = ctx.Command.Deadline is { } deadline ? RequestTimeout.After(ms: (int)Math.Max(1, (deadline - DateTimeOffset.UtcNow).TotalMilliseconds)) : RequestTimeout.None;
            var client = destination is null ? clients.CreateRequestClient<TRequest>(timeout) : clients.CreateRequestClient<TRequest>(destination, timeout);
            var response = await client.GetResponse<TResponse>(toRequest(ctx), ctx.CancellationToken);
            return StepResult.Success(toResult is null ? response.Message : toResult(response.Message));
        }));
    }

    /// <summary>Declares a worker that runs in another process, so pipelines using it validate here.</summary>
    public BusFlowBuilder AddRemoteWorker(string name)
    {
        if (_workers.ContainsKey(ValidWorkerName(name)))
        {
            throw new PipelineDefinitionException($"The worker '{name}' is registered here and declared remote; choose one.");
        }

        _remoteWorkers.Add(name);
        return this;
    }

    /// <summary>Registers an in-process observer of every pipeline event.</summary>
    public BusFlowBuilder AddObserver<TObserver>()
        where TObserver : class, IPipelineObserver
    {
        Services.AddSingleton<IPipelineObserver, TObserver>();
        return this;
    }

    private BusFlowBuilder AddWorker(WorkerRegistration worker)
    {
        if (_remoteWorkers.Contains(worker.Name))
        {
            throw new PipelineDefinitionException($"The worker '{worker.Name}' is declared remote and registered here; choose one.");
        }

        if (!_workers.TryAdd(worker.Name, worker))
        {
            throw new PipelineDefinitionException($"The worker '{worker.Name}' is registered twice.");
        }

        if (worker.Concurrency < 1)
        {
            throw new PipelineDefinitionException($"The worker '{worker.Name}' has concurrency {worker.Concurrency}; it must be at least 1.");
        }

        return this;
    }

    /// <summary>Validates every pipeline against the workers and pipelines known here; throws listing every problem.</summary>
    internal PipelineRegistry Build()
    {
        var workers = _workers.Keys.Concat(_remoteWorkers).ToHashSet(StringComparer.Ordinal);
        // A child starts on the current version of its name: a name registered only to drain cannot be one.
        var names = _pipelines.Where(p => !p.IsDraining).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var errors = new List<string>();
        var definitions = new List<PipelineDefinition>();
        var unmarked = _pipelines.GroupBy(p => p.Name, StringComparer.Ordinal).Where(g => g.Count() > 1 && g.All(p => !p.IsDraining && p.VersionValue is null)).ToList();
        foreach (var twice in unmarked)
        {
            errors.Add($"The pipeline name '{twice.Key}' is registered {twice.Count()} times. To keep an older version beside the new one while its pipelines finish, mark it Draining().");
        }

        foreach (var pipeline in _pipelines)
        {
            try
            {
                definitions.Add(pipeline.Build(workers, names));
            }
            catch (PipelineDefinitionException e)
            {
                errors.AddRange(e.Errors);
            }
        }

        errors.AddRange(VersionErrors([.. definitions.Where(d => !unmarked.Any(u => u.Key == d.Name))]));
        if (errors.Count > 0)
        {
            throw new PipelineDefinitionException(errors);
        }

        ChildCycleCheck(definitions.Where(d => !d.Draining).ToList());
        return new PipelineRegistry(definitions, _workers.Values);
    }

    /// <summary>Several registrations of one name are versions of it: each version once, exactly one not draining.</summary>
    private static IEnumerable<string> VersionErrors(List<PipelineDefinition> definitions)
    {
        foreach (var name in definitions.GroupBy(d => d.Name, StringComparer.Ordinal))
        {
            if (name.Count() == 1)
            {
                if (name.Single().Draining)
                {
                    yield return $"The pipeline '{name.Key}' is registered only with Draining(); register the version new pipelines start on beside it.";
                }

                continue;
            }

            foreach (var twice in name.GroupBy(d => d.Version, StringComparer.Ordinal).Where(g => g.Count() > 1))
            {
                yield return $"The pipeline '{name.Key}' is registered {twice.Count()} times with the version '{twice.Key}'; register each version once (a changed definition gets another version, or name one with Version()).";
            }

            var current = name.Count(d => !d.Draining);
            if (current != 1 && name.Select(d => d.Version).Distinct(StringComparer.Ordinal).Count() == name.Count())
            {
                yield return $"The pipeline '{name.Key}' is registered in {name.Count()} versions, {current} of them for new starts; mark every version but the one new pipelines start on with Draining().";
            }
        }
    }

    /// <summary>Depth-first search over "starts as a child" edges; each pipeline is explored once.</summary>
    private static void ChildCycleCheck(List<PipelineDefinition> definitions)
    {
        var byName = definitions.DistinctBy(d => d.Name).ToDictionary(d => d.Name, StringComparer.Ordinal);
        var done = new HashSet<string>(StringComparer.Ordinal);
        var path = new List<string>();
        foreach (var root in byName.Keys)
        {
            if (Visit(root) is { } cycle)
            {
                throw new PipelineDefinitionException([$"Pipelines start each other as children in a cycle: {string.Join(" -> ", cycle)}."]);
            }
        }

        List<string>? Visit(string name)
        {
            if (path.IndexOf(name) is var at and >= 0)
            {
                return [.. path.Skip(at), name];
            }

            if (!done.Add(name) || !byName.TryGetValue(name, out var definition))
            {
                return null;
            }

            path.Add(name);
            foreach (var child in definition.Steps.Where(s => s.Kind == StepKind.Child).Select(s => s.ChildDefinition!).Distinct(StringComparer.Ordinal))
            {
                if (Visit(child) is { } cycle)
                {
                    return cycle;
                }
            }

            path.RemoveAt(path.Count - 1);
            return null;
        }
    }

    private static string ValidWorkerName(string name) =>
        WorkerNamePattern().IsMatch(name)
            ? name
            : throw new PipelineDefinitionException($"The worker name '{name}' is not usable as a queue name; use letters, digits, '-', '_' and '.', up to 100 characters.");

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\z")]
    private static partial Regex WorkerNamePattern();
}
