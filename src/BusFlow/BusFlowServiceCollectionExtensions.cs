using BusFlow.Internal;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace BusFlow;

/// <summary>Registers BusFlow with MassTransit.</summary>
public static class BusFlowServiceCollectionExtensions
{
    /// <summary>
    /// Adds BusFlow to an existing MassTransit registration: the pipeline saga, the step workers and
    /// the clock. Call <see cref="BusFlowEndpointConfigurator.ConfigureBusFlowEndpoints"/> in the
    /// transport's configure callback. Definitions are validated here: an invalid pipeline throws
    /// <see cref="PipelineDefinitionException"/> naming every problem.
    /// </summary>
    public static IBusRegistrationConfigurator AddBusFlow(this IBusRegistrationConfigurator configurator, Action<BusFlowBuilder> configure)
    {
        var builder = new BusFlowBuilder(configurator);
        configure(builder);
        var registry = builder.Build();
        configurator.AddSingleton(registry);
        configurator.AddSingleton(new BusFlowRoles(builder.RunSaga, [.. builder.TransientFailures], builder.DefinitionWait));
        configurator.TryAddSingleton(TimeProvider.System);
        configurator.TryAddSingleton<RunningSteps>();
        configurator.TryAddSingleton<WorkerSlots>();
        configurator.TryAddSingleton<PipelineDecider>();
        configurator.TryAddSingleton<ColocatedSteps>();
        configurator.TryAddSingleton<PipelineClock>();
        configurator.TryAddSingleton<PipelineFollowUp>();
        configurator.AddMetrics();
        configurator.TryAddSingleton<PipelineMetrics>();
        configurator.TryAddSingleton(SendAddresses.AsGiven);

        // The engine's extension points for a store (BusFlow.Store), the same instances the state machine uses.
        configurator.TryAddSingleton<IPipelineDecider>(sp => sp.GetRequiredService<PipelineDecider>());
        configurator.TryAddSingleton<IPipelineCommitFollowUp>(sp => sp.GetRequiredService<PipelineFollowUp>());
        configurator.TryAddSingleton<IBusFlowSendEndpoints>(sp => sp.GetRequiredService<SendAddresses>());
        configurator.TryAddSingleton<IColocatedStepRunner>(sp => sp.GetRequiredService<ColocatedSteps>());
        configurator.TryAddScoped<IPipelineDecisionRecorder, BusDecisionRecorder>();
        configurator.TryAddScoped<IStepReportOutbox, BusStepReportOutbox>();
        configurator.AddHostedService(sp => sp.GetRequiredService<PipelineClock>());
        configurator.AddHostedService(sp => sp.GetRequiredService<ColocatedSteps>());

        if (builder.RunSaga)
        {
            var saga = configurator.AddSagaStateMachine<PipelineStateMachine, PipelineState>();
            saga.ExcludeFromConfigureEndpoints();
            builder.SagaRepository(saga);
        }

        // Endpoints ConfigureEndpoints makes, even before ConfigureBusFlowEndpoints is called.
        configurator.AddConfigureEndpointsCallback((_, _, endpoint) => PipelineEventBatchSplitter.Install(endpoint));
        configurator.AddConsumer<ExecuteStepConsumer>().ExcludeFromConfigureEndpoints();
        configurator.AddConsumer<CancelStepExecutionsConsumer>().ExcludeFromConfigureEndpoints();
        return configurator;
    }

    /// <summary>
    /// Adds MassTransit with BusFlow on the transport the <c>BusFlow</c> configuration section names
    /// (<c>InMemory</c> by default, or <c>RabbitMq</c>). An invalid setting fails at start naming it.
    /// </summary>
    public static IServiceCollection AddBusFlow(
        this IServiceCollection services,
        IConfiguration configuration,
        Action<BusFlowBuilder> configure,
        Action<IBusRegistrationConfigurator>? configureBus = null)
    {
        var options = BusFlowOptionsReader.Read(configuration);
        services.AddSingleton(new BusFlowTransportInfo(options.Transport));
        var quorum = options.Transport == BusFlowTransport.RabbitMq && options.RabbitMq.QueueType == RabbitMqQueueType.Quorum;
        if (quorum)
        {
            // Made by the container, so that it closes the declarations' connection with the host.
            services.AddSingleton(_ => new QuorumQueueDeclarations(options.RabbitMq));
            services.AddSingleton(sp => new SendAddresses(sp.GetRequiredService<QuorumQueueDeclarations>()));
        }

        // Start-up finishes only once every queue and binding exists, so nothing published right after is lost.
        services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromSeconds(60);
            o.StopTimeout = TimeSpan.FromSeconds(30);
        });
        services.AddSingleton(sp => new StartWatchdog(
            sp.GetRequiredService<IHostApplicationLifetime>(),
            options.StartTimeout ?? TimeSpan.Zero,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<StartWatchdog>>(),
            Environment.FailFast));
        services.AddSingleton<IStartWatchdog>(sp => sp.GetRequiredService<StartWatchdog>());
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<StartWatchdog>());
        services.AddOptions<BusFlowOptions>().BindConfiguration(BusFlowOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddMassTransit(x =>
        {
            x.AddBusFlow(b =>
            {
                configure(b);
                b.DefinitionWait = options.DefinitionWait ?? b.DefinitionWait;
            });
            x.DisableUsageTelemetry();
            configureBus?.Invoke(x);
            switch (options.Transport)
            {
                case BusFlowTransport.RabbitMq:
                    x.UsingRabbitMq((context, cfg) =>
                    {
                        var rabbit = options.RabbitMq;
                        cfg.Host(rabbit.Host, (ushort)rabbit.Port, rabbit.VirtualHost, h =>
                        {
                            h.Username(rabbit.Username);
                            h.Password(rabbit.Password);
                            if (rabbit.ClusterNodes.Count > 0)
                            {
                                FailoverEndpointResolver.Install(h, rabbit.Nodes());
                            }
                        });
                        if (quorum)
                        {
                            // Durable receive endpoints, and the error and dead-letter queues they fill,
                            // declared as quorum queues (SendAddresses declares the ones sent to).
                            cfg.ConnectEndpointConfigurationObserver(QuorumQueues.Instance);
                            cfg.SendTopology.ConfigureErrorSettings = QuorumQueues.IfDurable;
                            cfg.SendTopology.ConfigureDeadLetterSettings = QuorumQueues.IfDurable;
                        }

                        cfg.ConfigureBusFlowEndpoints(context);
                        cfg.ConfigureEndpoints(context);
                    });
                    break;
                default:
                    x.UsingInMemory((context, cfg) =>
                    {
                        cfg.ConfigureBusFlowEndpoints(context);
                        cfg.ConfigureEndpoints(context);
                    });
                    break;
            }
        });
        return services;
    }
}
