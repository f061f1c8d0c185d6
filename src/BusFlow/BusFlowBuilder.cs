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

    internal BusFlowBuilder(IServiceCollection services)
    {
        Services = services;
    }

    /// <summary>The service collection, for registering what handlers and observers need.</summary>
    public IServiceCollection Services { get; }

    /// <summary>Run the pipeline saga in this process (default true). Turn off in worker-only processes.</summary>
    public bool RunSaga { get; set; } = true;

    /// <summary>How the saga keeps its state; the default keeps it in memory (tests and demos only).</summary>
    public Action<ISagaRegistrationConfigurator<PipelineState>> SagaRepository { get; set; } = r => r.InMemoryRepository();

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
        _remoteWorkers.Add(ValidWorkerName(name));
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
        var names = _pipelines.Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        var errors = new List<string>();
        var definitions = new List<PipelineDefinition>();
        foreach (var duplicate in _pipelines.GroupBy(p => p.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            errors.Add($"The pipeline name '{duplicate.Key}' is registered {duplicate.Count()} times.");
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

        if (errors.Count > 0)
        {
            throw new PipelineDefinitionException(errors);
        }

        ChildCycleCheck(definitions);
        return new PipelineRegistry(definitions.DistinctBy(d => d.Name), _workers.Values);
    }

    private static void ChildCycleCheck(List<PipelineDefinition> definitions)
    {
        var byName = definitions.ToDictionary(d => d.Name, StringComparer.Ordinal);
        foreach (var root in definitions)
        {
            var path = new List<string> { root.Name };
            if (FindChildCycle(root, byName, path))
            {
                throw new PipelineDefinitionException([$"Pipelines start each other as children in a cycle: {string.Join(" -> ", path)}."]);
            }
        }
    }

    private static bool FindChildCycle(PipelineDefinition current, Dictionary<string, PipelineDefinition> byName, List<string> path)
    {
        foreach (var child in current.Steps.Where(s => s.Kind == StepKind.Child).Select(s => s.ChildDefinition!))
        {
            path.Add(child);
            if (child == path[0] || (byName.TryGetValue(child, out var next) && path.Count <= byName.Count + 1 && FindChildCycle(next, byName, path)))
            {
                return true;
            }

            path.RemoveAt(path.Count - 1);
        }

        return false;
    }

    private static string ValidWorkerName(string name) =>
        WorkerNamePattern().IsMatch(name)
            ? name
            : throw new PipelineDefinitionException($"The worker name '{name}' is not usable as a queue name; use letters, digits, '-', '_' and '.', up to 100 characters.");

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    private static partial Regex WorkerNamePattern();
}
