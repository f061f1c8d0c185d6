using BusFlow.Contracts;
using BusFlow.Internal;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace BusFlow;

/// <summary>Configures BusFlow's receive endpoints on any MassTransit transport.</summary>
public static class BusFlowEndpointConfigurator
{
    /// <summary>
    /// Transient failures (the store away, this process going away) retry until they succeed or the
    /// process ends, so work pauses and resumes instead of failing, and a message this process cannot
    /// finish goes back to its queue for another; anything else (optimistic-concurrency conflicts,
    /// bugs) gets a few quick retries, then MassTransit's error queue.
    /// </summary>
    private static void UseRetry(IReceiveEndpointConfigurator e, BusFlowRoles roles)
    {
        e.UseMessageRetry(r =>
        {
            r.Exponential(int.MaxValue, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(200));
            r.Handle<Exception>(roles.IsTransient);
        });

        e.UseMessageRetry(r =>
        {
            r.Intervals(10, 50, 100, 250, 500, 1000);
            r.Ignore<Exception>(roles.IsTransient);
        });
    }

    /// <summary>
    /// Lets every receive endpoint configured after this call whose consumers take single pipeline
    /// events (<c>IConsumer&lt;StepCompleted&gt;</c>, a handler of <c>PipelineEvent</c>) receive them
    /// from <see cref="PipelineEventBatch"/> messages too, one by one and in order, with the message id
    /// each has when published alone. <see cref="ConfigureBusFlowEndpoints"/> calls it; a process that
    /// only subscribes to the events calls it before its <c>ConfigureEndpoints</c>.
    /// </summary>
    public static void SplitPipelineEventBatches(this IBusFactoryConfigurator cfg) =>
        cfg.ConnectEndpointConfigurationObserver(PipelineEventBatchSplitter.Instance);

    /// <summary>How many partitions order the saga's messages per pipeline.</summary>
    public const int SagaPartitions = 32;

    /// <summary>
    /// Adds the saga endpoint (<c>busflow-pipeline</c>), one queue per local worker
    /// (<c>busflow-step-&lt;worker&gt;</c>) and a per-process temporary queue that receives cancel signals.
    /// </summary>
    public static void ConfigureBusFlowEndpoints<TEndpointConfigurator>(this IBusFactoryConfigurator<TEndpointConfigurator> cfg, IBusRegistrationContext context)
        where TEndpointConfigurator : IReceiveEndpointConfigurator
    {
        var registry = context.GetRequiredService<PipelineRegistry>();
        var roles = context.GetRequiredService<BusFlowRoles>();

        cfg.SplitPipelineEventBatches();

        // Events are published as their concrete types; the abstract bases need no exchanges.
        cfg.Publish<PipelineEvent>(p => p.Exclude = true);
        cfg.Publish<StepEvent>(p => p.Exclude = true);

        if (roles.RunSaga)
        {
            cfg.ReceiveEndpoint(QueueNames.Saga, e =>
            {
                e.PrefetchCount = 64;
                UseRetry(e, roles);
                e.UseInMemoryOutbox(context);
                var partitioner = e.CreatePartitioner(SagaPartitions);
                var time = context.GetRequiredService<TimeProvider>();
                var addresses = context.GetRequiredService<SendAddresses>();
                var logger = context.GetRequiredService<ILoggerFactory>().CreateLogger("BusFlow.Internal.DefinitionHandOff");
                e.ConfigureSaga<PipelineState>(context, s =>
                {
                    var messages = new SagaEndpointMessages(s, partitioner, roles, time, addresses, logger);
                    foreach (var message in SagaMessageRegistry.All)
                    {
                        message.Accept(messages);
                    }
                });
            });
        }

        foreach (var worker in registry.Workers.Values)
        {
            cfg.ReceiveEndpoint(QueueNames.Worker(worker.Name), e =>
            {
                e.PrefetchCount = worker.Concurrency;
                e.ConcurrentMessageLimit = worker.Concurrency;
                UseRetry(e, roles);
                e.ConfigureConsumer<ExecuteStepConsumer>(context);
            });
        }

        if (registry.Workers.Count > 0)
        {
            cfg.ReceiveEndpoint(new TemporaryEndpointDefinition(QueueNames.NodePrefix), DefaultEndpointNameFormatter.Instance, e =>
                e.ConfigureConsumer<CancelStepExecutionsConsumer>(context));
        }
    }
}
